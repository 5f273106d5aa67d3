"""Whether a new version serves: the rule, and a version kept from serving."""
from __future__ import annotations

import pytest

from orchestrator.learning.models import ModelVersion, TrainingPolicy, TrainingRun
from backends.quality import Comparison
from orchestrator.learning.training.promotion import should_promote
from tests.conftest import sms_rows
from tests.factories import ls_tasks, training_policy


@pytest.mark.parametrize(
    "rule, comparison, serving, promoted, why",
    [
        ("always", Comparison(-0.3, -0.4, -0.2, 50), True, True, ""),
        ("if_not_worse", Comparison(-0.3, -0.4, -0.2, 50), False, True, ""),  # nothing serves yet
        ("if_not_worse", None, True, True, "no audit label yet"),  # nothing unbiased to compare on
        ("if_not_worse", Comparison(-0.01, -0.03, 0.01, 50), True, True, ""),  # within the 0.02 margin
        ("if_not_worse", Comparison(-0.05, -0.12, 0.02, 50), True, True, ""),  # lower, but could be noise
        ("if_not_worse", Comparison(-0.05, -0.08, -0.02, 50), True, False, "on 50 audit labels"),  # surely worse
        ("if_not_worse", Comparison(0.03, 0.01, 0.05, 50), True, True, ""),
    ],
)
def test_should_promote(rule, comparison, serving, promoted, why):
    decision, said = should_promote(training_policy(promotion=rule, max_macro_f1_drop=0.02), comparison,
                                    serving=serving)
    assert decision is promoted
    assert why in said and bool(said) is bool(why)


def test_if_not_worse_keeps_the_better_version_serving(trained_sms_project, queued_checks, train_on, settings):
    """Trained on labels a third of whose ham says spam, a version is worse on the audit sample's
    (true) labels than the serving one: kept from serving, with the comparison in the run's detail."""
    from orchestrator.learning import audit

    settings.AUDIT_SHARE = 0.3
    project, serving = trained_sms_project
    TrainingPolicy.objects.filter(project=project).update(promotion="if_not_worse", max_macro_f1_drop=0.0)
    project.refresh_from_db()
    rows = sms_rows(300)
    audited = audit.is_audit(project.ls_project_id, list(range(1, len(rows) + 1)))
    noisy = [("spam" if label == "ham" and i % 3 == 0 and not audited[i] else label, text)
             for i, (label, text) in enumerate(rows)]
    run = train_on(project, trigger="start_training", tasks=ls_tasks(noisy)).run
    assert run.status == TrainingRun.Status.SUCCEEDED and not run.promoted
    assert f"kept the serving version: on {int(audited.sum())} audit labels" in run.detail
    version = run.model_version
    assert version.status == ModelVersion.Status.READY
    assert version.num_annotations == len(rows) - int(audited.sum())  # the audit labels trained nothing
    assert version.metrics["audit_labels"] == audited.sum()
    assert version.metrics["audit_macro_f1_low"] <= version.metrics["audit_macro_f1"] <= version.metrics["audit_macro_f1_high"]
    project.refresh_from_db()
    assert project.serving_version == serving

    # The same labels, clean: not worse on the audit sample, so it serves.
    run = train_on(project, trigger="start_training", tasks=ls_tasks(rows, revision="2026-12-06T10:00:00Z")).run
    assert run.status == TrainingRun.Status.SUCCEEDED and run.promoted, run.detail
    project.refresh_from_db()
    assert project.serving_version == run.model_version


def test_promotion_serves_the_version_and_says_whether_it_asked_for_a_push(trained_sms_project, jobs_sent,
                                                                           monkeypatch):
    from orchestrator import jobs
    from orchestrator.gateways import label_studio
    from orchestrator.jobs import Job
    from orchestrator.learning.training.fit import train_model_version
    from orchestrator.learning.training.promotion import promote_version
    from tests.factories import examples

    project, first = trained_sms_project
    monkeypatch.setattr(label_studio, "is_configured", lambda: True)
    second = train_model_version(project=project, examples=examples(sms_rows(300)), promote=False)
    assert promote_version(version=second, request_push=False) is None
    project.refresh_from_db()
    first.refresh_from_db()
    assert project.serving_version == second and first.status == ModelVersion.Status.READY
    assert jobs_sent == []
    third = train_model_version(project=project, examples=examples(sms_rows(350)), promote=False)
    run = promote_version(version=third, request_push=True)
    assert run.model_version == third and jobs_sent == [Job(jobs.RUN_SCORING, (run.pk,), 0.0)]
