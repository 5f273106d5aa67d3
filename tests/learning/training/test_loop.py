"""The training check in process: trains under the lease, skips what it learned, records failures.

Label Studio is replaced here by lists of task objects shaped like its API's; the real
server, worker and broker are exercised in tests/integration/test_training_loop_e2e.py.
"""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from orchestrator.gateways.label_studio import LabelStudioError
from orchestrator.learning import leases
from orchestrator.learning.models import ModelVersion, Project, TrainingPolicy, TrainingRun, WebhookEvent
from orchestrator.learning.training import loop, schedule
from tests.conftest import sms_rows
from tests.factories import ls_tasks, webhook_event


def test_a_check_trains_on_every_annotation_and_consumes_the_events(sms_project, queued_checks, train_on):
    rows = sms_rows(60)
    for i in range(30):
        webhook_event(sms_project, annotation_ids=[i])
    result = train_on(sms_project, trigger="annotations", tasks=ls_tasks(rows))
    run = result.run
    assert result.outcome == "trained" and run.status == TrainingRun.Status.SUCCEEDED
    assert run.num_events == 30 and run.num_annotations == 60 and run.promoted
    run.refresh_from_db()
    assert set(run.timings) == {"read", "evaluate", "fit", "mlflow"} and all(v >= 0 for v in run.timings.values())
    sms_project.refresh_from_db()
    assert sms_project.serving_version == run.model_version and run.model_version.status == ModelVersion.Status.SERVING
    assert run.model_version.metrics["num_examples"] == 60 and "macro_f1" in run.model_version.metrics
    assert schedule.pending_of(sms_project).events == 0
    assert sms_project.training_lease_owner == "" and sms_project.training_lease_until is None


def test_unchanged_annotations_do_not_make_a_new_version_unless_asked(sms_project, queued_checks, train_on):
    tasks = ls_tasks(sms_rows(40))
    first = train_on(sms_project, trigger="quiet", tasks=tasks).run
    webhook_event(sms_project)
    again = train_on(sms_project, trigger="quiet", tasks=tasks).run
    assert again.status == TrainingRun.Status.SKIPPED and first.model_version.version in again.detail
    assert schedule.pending_of(sms_project).events == 0
    # An edit (same annotation, new revision) is a change.
    edited = ls_tasks(sms_rows(40), revision="2026-11-23T11:00:00Z")
    assert train_on(sms_project, trigger="quiet", tasks=edited).outcome == "trained"
    # Start Training (Label Studio's button, or anyone who can reach /webhook) on the same
    # annotations says so rather than making a duplicate version; the console can force one.
    webhook_event(sms_project, action="START_TRAINING")
    asked = train_on(sms_project, trigger="start_training", tasks=edited).run
    assert asked.status == TrainingRun.Status.SKIPPED and "p7-v2" in asked.detail and "Train now" in asked.detail
    assert schedule.pending_of(sms_project).events == 0
    webhook_event(sms_project, action="TRAIN_FORCED")  # the console's Train now, even if unchanged
    forced = train_on(sms_project, trigger="console", tasks=edited)
    assert forced.outcome == "trained" and forced.run.trigger == "console"
    assert ModelVersion.objects.filter(project=sms_project).count() == 3


def test_too_few_annotations_skip_until_the_policy_minimum(sms_project, queued_checks, train_on):
    TrainingPolicy.objects.filter(project=sms_project).update(min_annotations=50)
    few = ls_tasks(sms_rows(20))
    run = train_on(sms_project, trigger="quiet", tasks=few).run
    assert run.status == TrainingRun.Status.SKIPPED and "50" in run.detail
    assert not ModelVersion.objects.filter(project=sms_project).exists()


def test_a_training_that_raises_is_recorded_and_the_old_version_keeps_serving(trained_sms_project, queued_checks, train_on):
    project, serving = trained_sms_project
    one_class = ls_tasks([("ham", f"just ham {i}") for i in range(30)])
    webhook_event(project)
    result = train_on(project, trigger="start_training", tasks=one_class)
    run = result.run
    assert result.outcome == "failed" and run.status == TrainingRun.Status.FAILED
    assert "ham" in run.detail and "spam" in run.detail  # says which labels are missing
    assert run.model_version.status == ModelVersion.Status.FAILED and run.model_version.error
    project.refresh_from_db()
    assert project.serving_version == serving
    assert schedule.pending_of(project).events == 0  # not retried forever: the next event retries


def test_label_studio_errors_are_retried_then_recorded(sms_project, queued_checks, settings, train_on):
    settings.LABEL_STUDIO_RETRY_BACKOFF = 0.0
    tasks = ls_tasks(sms_rows(40))
    calls = []

    def flaky(pid):
        calls.append(pid)
        if len(calls) < 3:
            raise LabelStudioError("GET api/tasks/ answered 503: restarting", status_code=503)
        return tasks

    assert train_on(sms_project, trigger="quiet", tasks=flaky, count=40).outcome == "trained"
    assert len(calls) == 3

    def down(pid):
        calls.append(pid)
        raise LabelStudioError("GET api/tasks/ failed: connection refused")

    calls.clear()
    result = train_on(sms_project, trigger="start_training", tasks=down)
    assert result.outcome == "failed" and "connection refused" in result.run.detail
    assert len(calls) == settings.LABEL_STUDIO_RETRIES
    # A client error is not retried: it will not get better.
    calls.clear()

    def forbidden(pid):
        calls.append(pid)
        raise LabelStudioError("GET api/tasks/ answered 403: no access", status_code=403)

    assert train_on(sms_project, trigger="start_training", tasks=forbidden).outcome == "failed"
    assert len(calls) == 1


def test_one_training_per_project_at_a_time(sms_project, queued_checks, train_on):
    assert leases.acquire(sms_project.pk, "worker-a", kind="training")
    result = train_on(sms_project, trigger="start_training", tasks=[])
    assert result.outcome == "busy" and not TrainingRun.objects.exists()
    # It asks to look again when the lease runs out.
    assert queued_checks and queued_checks[-1][0] == sms_project.pk and queued_checks[-1][1] >= 2
    assert not leases.renew(sms_project.pk, "worker-b", kind="training")
    leases.release(sms_project.pk, "worker-b", kind="training")  # not the owner: no effect
    assert not leases.acquire(sms_project.pk, "worker-b", kind="training")
    leases.release(sms_project.pk, "worker-a", kind="training")
    assert leases.acquire(sms_project.pk, "worker-b", kind="training")


def test_a_dead_workers_run_is_abandoned_and_its_events_trained_again(sms_project, queued_checks, train_on):
    """A worker killed mid-training: its lease lapses, the next check fails its run and trains."""
    webhook_event(sms_project)
    assert leases.acquire(sms_project.pk, "dead-worker", kind="training", seconds=0.01)
    stuck_version = ModelVersion.objects.create(project=sms_project, version="p7-v1", label_config_digest="x")
    stuck = TrainingRun.objects.create(project=sms_project, trigger="quiet", owner="dead-worker",
                                       model_version=stuck_version, events_through=1)
    Project.objects.filter(pk=sms_project.pk).update(training_lease_until=timezone.now() - timedelta(seconds=1))
    result = train_on(sms_project, trigger="quiet", tasks=ls_tasks(sms_rows(30)))
    assert result.outcome == "trained"
    stuck.refresh_from_db()
    stuck_version.refresh_from_db()
    assert stuck.status == TrainingRun.Status.FAILED and "worker stopped" in stuck.detail
    assert stuck_version.status == ModelVersion.Status.FAILED
    sms_project.refresh_from_db()
    assert sms_project.serving_version == result.run.model_version and sms_project.serving_version.version == "p7-v2"


def test_the_check_reschedules_itself_until_the_quiet_period_ends(sms_project, queued_checks):
    webhook_event(sms_project)
    assert str(loop.run_check(sms_project.pk)) == "later"
    assert queued_checks and queued_checks[-1][0] == sms_project.pk and 0 < queued_checks[-1][1] <= 2
    assert not TrainingRun.objects.exists()


def test_reconciliation_asks_again_for_events_a_lost_message_left(sms_project, queued_checks):
    WebhookEvent.objects.filter(pk=webhook_event(sms_project).pk).update(received_at=timezone.now() - timedelta(minutes=10))
    assert loop.reconcile() == {"checks_requested": 1, "changes_noticed": 0, "projects_failed": 0}
    assert queued_checks == [(sms_project.pk, 0.0)]
    assert loop.reconcile()["checks_requested"] == 0  # a check is on its way


def test_one_poisoned_project_leaves_every_other_projects_reconciliation_working(sms_project, queued_checks, caplog):
    """A row from before the policy bounds (quiet_seconds 1e20) fails its own check, nobody else's."""
    from orchestrator.learning.models import TrainingPolicy
    from orchestrator.learning.projects import setup_project
    from tests.conftest import SMS_CONFIG

    poisoned = setup_project(project_key="3.1717171717", label_config=SMS_CONFIG)
    TrainingPolicy.objects.update_or_create(project=poisoned, defaults={"quiet_seconds": 1e20})
    long_ago = timezone.now() - timedelta(minutes=10)
    for project in (poisoned, sms_project):
        WebhookEvent.objects.filter(pk=webhook_event(project).pk).update(received_at=long_ago)
    assert loop.reconcile() == {"checks_requested": 1, "changes_noticed": 0, "projects_failed": 1}
    assert queued_checks == [(sms_project.pk, 0.0)]
    assert "reconcile_failed project=3" in caplog.text


def test_beside_a_poisoned_project_another_trains_and_pushes(sms_project, fake_ls, queued_runs, queued_checks, reads):
    """The healthy project's whole loop goes on: beat notices its events, its check trains, the
    new version is pushed to Label Studio and orders its queue; the poisoned one fails alone."""
    from orchestrator.learning.models import ScoringRun
    from orchestrator.learning.projects import setup_project
    from orchestrator.learning.scoring import job, runs
    from tests.conftest import SMS_CONFIG

    poisoned = setup_project(project_key="3.1717171717", label_config=SMS_CONFIG)
    TrainingPolicy.objects.filter(project=poisoned).update(quiet_seconds=1e20)  # as a row from before the bounds
    long_ago = timezone.now() - timedelta(minutes=10)
    for project in (poisoned, sms_project):
        WebhookEvent.objects.filter(pk=webhook_event(project).pk).update(received_at=long_ago)
    reads.source = ls_tasks(sms_rows(60))
    fake_ls.labeled = {task["id"] for task in reads.source}  # one Label Studio: the tasks it trains on are labeled

    assert loop.reconcile()["projects_failed"] == 1
    assert [pk for pk, _ in queued_checks] == [sms_project.pk]
    assert loop.run_check(sms_project.pk).outcome == "trained"
    sms_project.refresh_from_db()
    version = sms_project.serving_version
    assert version is not None and version.metrics["num_examples"] == 60

    push = ScoringRun.objects.get(pk=queued_runs[-1])  # (the cold starts' runs were asked for before)
    assert push.project == sms_project and push.model_version == version
    assert job.run_scoring(push.pk) == ScoringRun.Status.SUCCEEDED
    assert fake_ls.project["model_version"] == version.version
    assert fake_ls.model_versions(0) == {version.version: 2500 - 60}
    assert fake_ls.tags_per_unlabeled_task(version.version) == {1: 2500 - 60}  # one each
    assert runs.reconcile()["projects_failed"] == 0
    assert not ModelVersion.objects.filter(project=poisoned).exists()


def _running_run(project) -> TrainingRun:
    return TrainingRun.objects.get(project=project, status=TrainingRun.Status.RUNNING)


def test_a_training_cancelled_while_it_reads_stops_before_fitting(trained_sms_project, queued_checks, train_on):
    project, serving = trained_sms_project
    tasks = ls_tasks(sms_rows(60))

    def read_while_an_operator_cancels(ls_project_id):
        loop.cancel(_running_run(project), by="lead")
        return tasks

    result = train_on(project, trigger="start_training", tasks=read_while_an_operator_cancels)
    run = result.run
    assert result.outcome == "cancelled" and run.status == TrainingRun.Status.CANCELLED
    assert run.detail == "cancelled by lead" and run.model_version is None and run.num_annotations == 60
    assert ModelVersion.objects.filter(project=project).count() == 1
    project.refresh_from_db()
    assert project.serving_version == serving
    assert project.training_lease_owner == ""  # the lease is given back: the next training may run


def test_a_training_cancelled_while_it_fits_keeps_its_version_ready_and_does_not_promote(
        trained_sms_project, queued_checks, train_on, monkeypatch):
    project, serving = trained_sms_project
    fit = loop.train_model_version

    def fit_while_an_operator_cancels(**kwargs):
        version = fit(**kwargs)
        loop.cancel(_running_run(project), by="lead")
        return version

    monkeypatch.setattr(loop, "train_model_version", fit_while_an_operator_cancels)
    run = train_on(project, trigger="start_training", tasks=ls_tasks(sms_rows(60))).run
    assert run.status == TrainingRun.Status.CANCELLED and not run.promoted
    assert run.detail == f"cancelled by lead; {run.model_version.version} was trained and stays ready, not promoted"
    assert ModelVersion.objects.get(pk=run.model_version.pk).status == ModelVersion.Status.READY
    project.refresh_from_db()
    assert project.serving_version == serving


def test_only_a_running_training_can_be_cancelled(trained_sms_project, queued_checks, train_on):
    import pytest

    project, _ = trained_sms_project
    run = train_on(project, trigger="start_training", tasks=ls_tasks(sms_rows(40))).run
    with pytest.raises(loop.CancelError, match=f"training run {run.pk} is succeeded"):
        loop.cancel(run, by="lead")
    run.refresh_from_db()
    assert run.cancel_requested_by == "" and run.status == TrainingRun.Status.SUCCEEDED


def test_a_large_training_serves_then_measures_its_version_in_the_same_run(sms_project, queued_checks, train_on,
                                                                           monkeypatch):
    from orchestrator.learning.training import fit

    monkeypatch.setattr(fit, "CV_UP_TO", 40)  # stands for 2,000: a hold-out instead of 5 folds, after serving
    at_promotion = []
    real_promote = loop.promotion.promote_if_allowed

    def promote(**kwargs):
        at_promotion.append(dict(kwargs["version"].metrics))
        return real_promote(**kwargs)

    monkeypatch.setattr(loop.promotion, "promote_if_allowed", promote)
    result = train_on(sms_project, trigger="annotations", tasks=ls_tasks(sms_rows(100)))
    run = result.run
    run.refresh_from_db()
    assert result.outcome == "trained" and run.promoted
    assert "macro_f1" not in at_promotion[0]  # the estimate came after the version served
    assert set(run.timings) == {"read", "fit", "mlflow", "evaluate"}  # (a JSON object: PostgreSQL keeps no order)
    version = run.model_version
    version.refresh_from_db()
    assert version.status == ModelVersion.Status.SERVING and version.metrics["holdout_examples"] == 20
    assert "macro_f1" in version.metrics and version.metrics["num_examples"] == 100


def test_reconciliation_notices_an_edit_whose_webhook_was_lost(sms_project, queued_checks, train_on, reads):
    """The count is the same; the annotation store's check sees the new revision and asks for a training."""
    train_on(sms_project, trigger="quiet", tasks=ls_tasks(sms_rows(40)))
    queued_checks.clear()
    assert loop.reconcile()["changes_noticed"] == 0  # nothing changed
    reads.source = ls_tasks(sms_rows(40), revision="2026-11-23T12:00:00Z")  # an annotator edited, unannounced
    assert loop.reconcile() == {"checks_requested": 1, "changes_noticed": 1, "projects_failed": 0}
    assert queued_checks == [(sms_project.pk, 0.0)]
    WebhookEvent.objects.filter(action="RECONCILE").update(received_at=timezone.now() - timedelta(minutes=1))
    assert loop.run_check(sms_project.pk).outcome == "trained"  # once the policy's quiet period is over
    sms_project.refresh_from_db()
    assert sms_project.training_lease_owner == ""
