"""An operator promotes, rolls back and retires versions; each act re-scores the queue or says why not."""
from __future__ import annotations

import pytest

from orchestrator.learning import versions
from orchestrator.learning.models import ModelVersion, ScoringRun


def test_roll_back_serves_the_previous_version_and_re_scores_the_queue(two_versions, fake_ls, queued_runs):
    project, first, second = two_versions
    served = versions.roll_back(project)
    project.refresh_from_db()
    first.refresh_from_db()
    second.refresh_from_db()
    assert project.serving_version == first and served.version == first and served.previous == second
    assert (first.status, second.status) == (ModelVersion.Status.SERVING, ModelVersion.Status.READY)
    run = ScoringRun.objects.get(pk=queued_runs[-1])
    assert (run.model_version, run.trigger, run.tag) == (first, "promote", f"{first.version}")
    assert served.describe() == (f"{first.version} serves (was {second.version}); scoring run {run.pk} re-scores "
                                 f"the queue ({run.tag})")
    # Nothing served before the first: a second roll back refuses and the first keeps serving.
    with pytest.raises(versions.VersionError, match=f"no version served before {first.version} can serve again"):
        versions.roll_back(project)
    # Promoting the newer one again serves it.
    versions.promote(second)
    project.refresh_from_db()
    assert project.serving_version == second


def test_a_retired_version_is_skipped_by_a_roll_back_and_the_serving_one_cannot_be_retired(two_versions, jobs_sent):
    project, first, second = two_versions
    with pytest.raises(versions.VersionError, match="serves .* promote another version or roll back first"):
        versions.retire(second)
    assert versions.retire(first).status == ModelVersion.Status.RETIRED
    assert versions.roll_back_target(project) is None
    with pytest.raises(versions.VersionError, match="no version served before .* can serve again"):
        versions.roll_back(project)
    project.refresh_from_db()
    assert project.serving_version == second
    # Promoted explicitly, a retired version serves again.
    served = versions.promote(ModelVersion.objects.get(pk=first.pk))
    assert served.scoring_run is None and "LABEL_STUDIO_URL is unset" in served.describe()


@pytest.mark.parametrize("change, why", [
    ({"status": ModelVersion.Status.FAILED}, "is failed: only a trained version can serve"),
    ({"model_uri": ""}, "has no registered model"),
    ({"label_config_digest": "0" * 16}, "another label config"),
])
def test_a_version_that_cannot_serve_is_refused_and_nothing_changes(two_versions, jobs_sent, change, why):
    project, first, second = two_versions
    ModelVersion.objects.filter(pk=first.pk).update(**change)
    with pytest.raises(versions.VersionError, match=why):
        versions.promote(ModelVersion.objects.select_related("project").get(pk=first.pk))
    project.refresh_from_db()
    assert project.serving_version == second and jobs_sent == []


def test_a_promotion_leaves_the_replaced_version_ready_for_a_roll_back(two_versions):
    project, first, second = two_versions
    assert first.status == ModelVersion.Status.READY
    assert versions.roll_back_target(project) == first


def test_roll_back_undoes_the_last_promotion_then_the_one_before(two_versions, jobs_sent):
    """v1..v4 each promoted as trained; a lead promotes v2 over v4: roll back serves v4 (what served
    before that promotion), not v1 (the newest version older than v2), then v3, then v2, then v1."""
    from orchestrator.learning.training.fit import train_model_version
    from tests.conftest import sms_rows
    from tests.factories import examples

    project, first, second = two_versions
    third = train_model_version(project=project, examples=examples(sms_rows(320)))
    fourth = train_model_version(project=project, examples=examples(sms_rows(340)))
    project.refresh_from_db()
    assert project.serving_version == fourth
    versions.promote(ModelVersion.objects.select_related("project").get(pk=second.pk))
    served = []
    for _ in range(4):
        project.refresh_from_db()
        served.append(versions.roll_back(project).version)
    assert served == [fourth, third, second, first]
    project.refresh_from_db()
    with pytest.raises(versions.VersionError, match="no version served before"):
        versions.roll_back(project)
    assert project.serving_version == first


def test_roll_back_skips_a_version_that_cannot_serve_any_more(two_versions, jobs_sent):
    from orchestrator.learning.training.fit import train_model_version
    from tests.conftest import sms_rows
    from tests.factories import examples

    project, first, second = two_versions
    third = train_model_version(project=project, examples=examples(sms_rows(320)))
    project.refresh_from_db()
    versions.retire(ModelVersion.objects.select_related("project").get(pk=second.pk))
    assert versions.roll_back_target(project) == first  # v2 served before v3, but it was retired
    assert versions.roll_back(project).version == first and versions.roll_back_target(project) is None
    # Promoting v3 again is a promotion like any: a roll back undoes it.
    versions.promote(ModelVersion.objects.select_related("project").get(pk=third.pk))
    project.refresh_from_db()
    assert versions.roll_back_target(project) == first
