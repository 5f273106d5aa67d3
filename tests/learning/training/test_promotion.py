"""Whether a new version serves: the rule, and a version kept from serving."""
from __future__ import annotations

import pytest

from orchestrator.learning.models import ModelVersion, TrainingPolicy, TrainingRun
from orchestrator.learning.training.promotion import should_promote
from tests.conftest import sms_rows
from tests.factories import ls_tasks, training_policy


@pytest.mark.parametrize(
    "rule, new, serving, promoted",
    [
        ("always", {"macro_f1": 0.5}, {"macro_f1": 0.9}, True),
        ("if_not_worse", {"macro_f1": 0.5}, None, True),  # nothing serves yet
        ("if_not_worse", {"macro_f1": 0.89}, {"macro_f1": 0.9}, True),  # within the 0.02 margin
        ("if_not_worse", {"macro_f1": 0.87}, {"macro_f1": 0.9}, False),
        ("if_not_worse", {"num_examples": 4.0}, {"macro_f1": 0.9}, True),  # too little data to compare
    ],
)
def test_should_promote(rule, new, serving, promoted):
    decision, why = should_promote(training_policy(promotion=rule, max_macro_f1_drop=0.02), new, serving)
    assert decision is promoted
    assert bool(why) is (not promoted or "num_examples" in new)


def test_if_not_worse_keeps_the_better_version_serving(trained_sms_project, queued_checks, train_on):
    project, serving = trained_sms_project
    ModelVersion.objects.filter(pk=serving.pk).update(metrics={**serving.metrics, "macro_f1": 1.0})
    TrainingPolicy.objects.filter(project=project).update(promotion="if_not_worse", max_macro_f1_drop=0.0)
    project.refresh_from_db()
    rows = sms_rows(60)
    noisy = [("spam" if label == "ham" and i % 3 == 0 else label, text) for i, (label, text) in enumerate(rows)]
    run = train_on(project, trigger="start_training", tasks=ls_tasks(noisy)).run
    assert run.status == TrainingRun.Status.SUCCEEDED and not run.promoted
    assert "kept the serving version" in run.detail
    assert run.model_version.status == ModelVersion.Status.READY
    project.refresh_from_db()
    assert project.serving_version == serving


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
