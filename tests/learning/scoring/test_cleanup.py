"""The service's older tags go once a newer one orders the queue; a long deletion is left to Label Studio."""
from __future__ import annotations

from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning.models import ScoringRun
from orchestrator.learning.scoring import cleanup
from tests.factories import scoring_run
from tests.learning.scoring.helpers import score_now


def test_a_slow_deletion_is_left_to_label_studio_and_checked_again(trained_sms_project, fake_ls, queued_runs, monkeypatch,
                                                                   jobs_sent):
    project, version = trained_sms_project
    first = score_now(project)
    project.strategy = "margin"
    project.save()
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    rechecks = jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: (job.args, job.countdown))
    second = score_now(project)  # a new tag; its switch asks for the clean-up
    assert second.tag == f"{version.version}.2" and rechecks == [((project.pk, 0), 0)]
    slow = fake_ls.delete_model_version

    def timing_out(ls_project_id, tag, timeout=None):
        assert timeout == cleanup.CLEANUP_REQUEST_SECONDS
        raise label_studio.LabelStudioError("DELETE model-versions failed: timed out")

    monkeypatch.setattr(label_studio, "delete_model_version", timing_out)
    assert cleanup.clean_up(project.pk) == f"deleting ['{first.tag}']"
    assert rechecks[-1] == ((project.pk, 1), cleanup.CLEANUP_RECHECK_SECONDS)
    monkeypatch.setattr(label_studio, "delete_model_version", slow)  # Label Studio finished meanwhile
    assert cleanup.clean_up(project.pk, 1) == f"deleted ['{first.tag}']"
    assert cleanup.clean_up(project.pk, 2) == "clean"
    assert fake_ls.model_versions(0) == {second.tag: 2500}


def test_old_tags_wait_while_a_push_runs(trained_sms_project, fake_ls, queued_runs, jobs_sent):
    project, version = trained_sms_project
    first = score_now(project)
    fake_ls.predictions.append({"task": 1, "model_version": "p7-v0", "score": 0.5, "result": []})
    ScoringRun.objects.filter(pk=first.pk).update(tag="p7-v0")  # an older tag of ours, still present
    running = scoring_run(project, version, tag="p7-v1.9", strategy="margin", status=ScoringRun.Status.RUNNING)
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    later = jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: job.countdown)
    assert cleanup.clean_up(project.pk) == "after the running push" and later == [cleanup.CLEANUP_RECHECK_SECONDS]
    assert "p7-v0" in fake_ls.model_versions(0)
    ScoringRun.objects.filter(pk=running.pk).update(status=ScoringRun.Status.SUCCEEDED)
    assert cleanup.clean_up(project.pk) == "deleted ['p7-v0']"
