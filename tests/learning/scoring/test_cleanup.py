"""The service's older tags go once a newer one orders the queue: prediction by prediction, a
bounded job at a time, never another model's predictions."""
from __future__ import annotations

from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning.models import PredictionCleanup, ScoringRun
from orchestrator.learning.scoring import cleanup
from tests.factories import scoring_run
from tests.learning.scoring.helpers import score_now


def _deletions_take(monkeypatch, fake_ls, seconds: float) -> list[float]:
    """Each deletion in Label Studio takes `seconds` on the clean-up's clock (one at a time)."""
    clock = [0.0]
    monkeypatch.setattr(cleanup, "_clock", lambda: clock[0])
    monkeypatch.setattr(cleanup, "CLEANUP_THREADS", 1)
    real_delete = fake_ls.delete_prediction

    def slow_delete(prediction_id):
        clock[0] += seconds
        return real_delete(prediction_id)

    monkeypatch.setattr(label_studio, "delete_prediction", slow_delete)
    return clock


def _pushed_then_rescored_later(project, jobs_sent):
    """A first push, then the clean-up's messages watched (not run) for the next ones: (first run, messages)."""
    first = score_now(project)
    project.strategy = "margin"
    project.save()
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    return first, jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: job.args)


def test_a_long_deletion_goes_on_in_slices_that_end_on_time_and_resume_where_the_last_stopped(
        trained_sms_project, fake_ls, queued_runs, monkeypatch, jobs_sent):
    project, version = trained_sms_project
    first = score_now(project)
    fake_ls.predictions.append({"task": 7, "model_version": "someone else's model", "score": 0.1, "result": []})
    project.strategy = "margin"
    project.save()
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    handed_over = jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: (job.args, job.countdown))
    second = score_now(project)  # a new tag; its switch asks for the clean-up
    assert second.tag == f"{version.version}.2" and handed_over == [((project.pk, 0, 0, 2), 0)]  # the 2nd clean-up
    monkeypatch.setattr(cleanup, "CLEANUP_PAGE", 1000)
    clock = _deletions_take(monkeypatch, fake_ls, 0.125)  # a 30-s slice: 240 deletions, and the one begun at 30 s

    outcomes, deleted_before, started = [cleanup.clean_up(project.pk)], 0, 0.0
    while outcomes[-1].startswith("deleting"):
        # The time is read before each deletion: a slice stops at its budget, within one request,
        # even in the middle of a page (the page is listed again by the next slice).
        assert fake_ls.deleted - deleted_before == 241 and clock[0] - started == 30.125
        deleted_before, started = fake_ls.deleted, clock[0]
        outcomes.append(cleanup.clean_up(*handed_over[-1][0]))
    assert outcomes[0] == f"deleting ['{first.tag}'] after task 0"  # the first page, cut short
    assert f"deleting ['{first.tag}'] after task 1000" in outcomes and outcomes[-1] == f"deleted ['{first.tag}']"
    assert len(outcomes) == 11 and fake_ls.deleted == 2500  # 2,500 at 241 a slice
    row = PredictionCleanup.objects.get(project=project)
    assert row.deleted == 2500 and row.finished_at is not None
    assert cleanup.clean_up(project.pk) == "clean"
    assert fake_ls.model_versions(0) == {second.tag: 2500, "someone else's model": 1}


def test_a_clean_up_whose_message_was_lost_is_resumed_by_beat_from_where_it_stopped(
        trained_sms_project, fake_ls, queued_runs, monkeypatch, jobs_sent):
    from datetime import timedelta

    from django.utils import timezone

    project, version = trained_sms_project
    first, asked = _pushed_then_rescored_later(project, jobs_sent)
    score_now(project)
    monkeypatch.setattr(cleanup, "CLEANUP_PAGE", 1000)
    _deletions_take(monkeypatch, fake_ls, 0.01)  # a slice: 3,000 deletions' time, pages of 1,000
    monkeypatch.setattr(cleanup, "CLEANUP_BUDGET_SECONDS", 9.995)
    assert cleanup.clean_up(project.pk) == f"deleting ['{first.tag}'] after task 1000"
    asked.clear()  # ... and the hand-over's message is lost (the worker restarted)
    assert cleanup.resume_stalled() == 0  # not stalled yet
    PredictionCleanup.objects.filter(project=project).update(moved_at=timezone.now() - timedelta(minutes=6))
    assert cleanup.resume_stalled() == 1 and asked == [(project.pk, 0, 1000, 2)]
    monkeypatch.setattr(cleanup, "CLEANUP_BUDGET_SECONDS", 60.0)
    assert cleanup.clean_up(*asked[-1]) == f"deleted ['{first.tag}']"
    assert fake_ls.deleted == 2500 and PredictionCleanup.objects.get(project=project).finished_at is not None
    assert cleanup.resume_stalled() == 0


def test_a_failed_deletion_is_tried_again_later_from_where_it_stopped(trained_sms_project, fake_ls, queued_runs,
                                                                      monkeypatch, jobs_sent):
    project, version = trained_sms_project
    first = score_now(project)
    project.strategy = "margin"
    project.save()
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    later = jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: (job.args, job.countdown))
    second = score_now(project)
    monkeypatch.setattr(cleanup, "CLEANUP_PAGE", 1000)
    _deletions_take(monkeypatch, fake_ls, 0.01)
    monkeypatch.setattr(cleanup, "CLEANUP_BUDGET_SECONDS", 9.995)  # the first page, then the time is up
    assert cleanup.clean_up(project.pk) == f"deleting ['{first.tag}'] after task 1000"
    fake_ls.delete_faults = ["DELETE api/predictions answered 503"]
    assert cleanup.clean_up(*later[-1][0]).startswith("failed: DELETE api/predictions answered 503")
    assert later[-1] == ((project.pk, 1, 1000, 2), cleanup.CLEANUP_RECHECK_SECONDS)
    monkeypatch.setattr(cleanup, "CLEANUP_BUDGET_SECONDS", 60.0)
    assert cleanup.clean_up(*later[-1][0]) == f"deleted ['{first.tag}']"
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


def test_pools_of_runs_long_over_are_pruned_and_those_of_active_runs_stay(trained_sms_project):
    from datetime import timedelta

    from django.utils import timezone

    from orchestrator.learning.models import ScoringPool

    project, version = trained_sms_project
    long_ago = timezone.now() - timedelta(days=31)
    runs = {status: scoring_run(project, version, tag=f"t-{status}", status=status, finished_at=long_ago)
            for status in (ScoringRun.Status.CANCELLED, ScoringRun.Status.FAILED, ScoringRun.Status.RUNNING)}
    recent = scoring_run(project, version, tag="t-recent", status=ScoringRun.Status.CANCELLED,
                         finished_at=timezone.now())
    for run in [*runs.values(), recent]:
        ScoringPool.objects.create(run=run, size=1, data=b"x")
    assert cleanup.prune_pools(30) == 2
    assert set(ScoringPool.objects.values_list("run__tag", flat=True)) == {"t-running", "t-recent"}
    assert cleanup.prune_pools(0) == 0


def test_a_clean_up_asked_for_during_a_slice_starts_from_the_first_task_and_the_older_one_stops(
        trained_sms_project, fake_ls, queued_runs, monkeypatch, jobs_sent):
    """A push's new clean-up covers the older one's tags and more: the older slice's cursor (tasks
    above it done for the older tags only) must not become the new one's, or the new tag's stale
    predictions below it would stay (found end to end: a killed worker resumed from there)."""
    project, version = trained_sms_project
    first, asked = _pushed_then_rescored_later(project, jobs_sent)
    second = score_now(project)
    monkeypatch.setattr(cleanup, "CLEANUP_PAGE", 1000)
    _deletions_take(monkeypatch, fake_ls, 0.01)
    monkeypatch.setattr(cleanup, "CLEANUP_BUDGET_SECONDS", 9.995)
    older = asked[-1]
    real_delete_tags = cleanup.delete_tags
    pushed_meanwhile = []

    def a_push_lands_during_the_slice(*args, **kwargs):
        done = real_delete_tags(*args, **kwargs)
        pushed_meanwhile.append(score_now(project))  # its own clean-up asked for: generation 3
        return done

    monkeypatch.setattr(cleanup, "delete_tags", a_push_lands_during_the_slice)
    outcome = cleanup.clean_up(*older)
    assert outcome == f"deleted 1000 of ['{first.tag}']; a newer clean-up goes on"
    newer = asked[-1]
    assert newer == (project.pk, 0, 0, 3) and PredictionCleanup.objects.get(project=project).after_task == 0
    assert cleanup.clean_up(*older) == "replaced by a newer clean-up"  # a late message of the older one
    monkeypatch.setattr(cleanup, "delete_tags", real_delete_tags)
    monkeypatch.setattr(cleanup, "CLEANUP_BUDGET_SECONDS", 600.0)
    assert cleanup.clean_up(*newer).startswith("deleted")
    assert fake_ls.model_versions(0) == {pushed_meanwhile[0].tag: 2500}
    assert second.tag != pushed_meanwhile[0].tag


def test_retrieve_predictions_during_a_push_leaves_each_task_one_prediction_of_the_tag(
        trained_sms_project, fake_ls, queued_runs, jobs_sent, client):
    """Label Studio's Retrieve predictions skips tasks holding a prediction of the tag; racing a push, a task the
    push had not reached gets /predict's answer and then the push's. The /predict of several tasks asks for a
    clean-up, which keeps one per task (the newest) and never touches another model's."""
    from django.utils import timezone

    project, version = trained_sms_project
    run = score_now(project)
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    asked = jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: (job.args, job.countdown))
    # Stored before the push reached the tasks (a lower id than the push's), which came last.
    retrieved = [{"task": t, "model_version": run.tag, "score": 0.5, "result": [], "id": -t} for t in (5, 6, 7)]
    fake_ls.predictions += retrieved + [{"task": 5, "model_version": "someone else's model", "score": 0.1, "result": []}]
    answer = client.post("/predict", {"tasks": [{"id": 5, "data": {"text": "hi"}}, {"id": 6, "data": {"text": "yo"}}],
                                      "project": f"{project.ls_project_id}.1"}, content_type="application/json")
    # Generation 0 (the latest when it runs): the push's own clean-up, asked for later, cannot replace it.
    assert answer.status_code == 200 and asked == [((project.pk, 0, 0, 0), cleanup.RETRIEVE_SETTLE_SECONDS)]
    cleanup.request_cleanup(project.pk)  # a push ends after the Retrieve was answered: its clean-up runs first
    assert cleanup.clean_up(*asked[-1][0]) == f"deleted 3 second predictions of {run.tag}"
    late = [{"task": t, "model_version": run.tag, "score": 0.5, "result": [], "id": -t} for t in (8, 9)]
    fake_ls.predictions += late  # stored by Label Studio after that clean-up; the Retrieve's, 30 s on, still runs
    assert cleanup.clean_up(*asked[0][0]) == f"deleted 2 second predictions of {run.tag}"
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}
    assert all(p not in fake_ls.predictions for p in retrieved)  # the push's, the newest, stays
    assert any(p["model_version"] == "someone else's model" for p in fake_ls.predictions)
    # Far from any push, a Retrieve asks for nothing; one task (a task opened) never does.
    ScoringRun.objects.filter(project=project).update(finished_at=timezone.now() - timezone.timedelta(hours=1))
    assert not cleanup.after_retrieve(project.pk)
    client.post("/predict", {"tasks": [{"id": 5, "data": {"text": "hi"}}, {"id": 6, "data": {"text": "yo"}}],
                             "project": f"{project.ls_project_id}.1"}, content_type="application/json")
    assert len(asked) == 2  # the two above: nothing new
