"""The training loop in process: decisions, coalescing, the lease, failures, promotion.

Label Studio is replaced here by lists of task objects shaped like its API's; the real
server, worker and broker are exercised in tests/integration/test_training_loop_e2e.py.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from orchestrator import jobs
from orchestrator.gateways.label_studio import LabelStudioError
from orchestrator.learning.models import ModelVersion, Project, TrainingPolicy, TrainingRun, WebhookEvent
from orchestrator.gateways import label_studio
from orchestrator.learning import leases
from orchestrator.learning.training import loop, schedule
from orchestrator.learning.training.promotion import should_promote
from orchestrator.learning.training.schedule import Decision, Pending, decide
from tests.conftest import sms_rows

T0 = timezone.now()


def policy(**fields) -> TrainingPolicy:
    return TrainingPolicy(**{"auto_train": True, "min_annotations": 10, "retrain_every": 25, "quiet_seconds": 20.0,
                             **fields})


def pending(events=1, changes=None, forced=False, age=0.0) -> Pending:
    return Pending(events=events, changes=events if changes is None else changes, forced=forced,
                   last_at=T0 - timedelta(seconds=age), through_id=events)


# --- decide: pure ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rules, state, expected",
    [
        ({}, Pending(), Decision(train=False)),
        ({}, pending(forced=True), Decision(train=True, trigger="start_training")),
        ({"auto_train": False}, pending(events=500), Decision(train=False)),
        ({"auto_train": False}, pending(forced=True), Decision(train=True, trigger="start_training")),
        ({}, pending(events=25), Decision(train=True, trigger="annotations")),
        ({}, pending(events=3, changes=30), Decision(train=True, trigger="annotations")),  # a bulk delete
        ({}, pending(events=3, age=20.0), Decision(train=True, trigger="quiet")),
        # Not due: look again at the end of the quiet period or in 2 s, whichever is first.
        ({}, pending(events=3, age=19.5), Decision(train=False, check_at=T0 + timedelta(seconds=0.5))),
        ({}, pending(events=3, age=5.0), Decision(train=False, check_at=T0 + timedelta(seconds=2))),
        ({"quiet_seconds": 0}, pending(events=3), Decision(train=False, check_at=T0 + timedelta(seconds=2))),
        ({"quiet_seconds": 0, "retrain_every": 0}, pending(events=3), Decision(train=False)),
        ({"retrain_every": 0}, pending(events=300, age=1), Decision(train=False, check_at=T0 + timedelta(seconds=2))),
    ],
)
def test_decide(rules, state, expected):
    assert decide(policy(**rules), state, T0) == expected


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
    decision, why = should_promote(policy(promotion=rule, max_macro_f1_drop=0.02), new, serving)
    assert decision is promoted
    assert bool(why) is (not promoted or "num_examples" in new)


# --- with the database ---------------------------------------------------------------------------
def ls_tasks(rows, *, start_id=1, revision="2026-11-23T10:00:00Z"):
    """Label Studio task objects with one annotation each, as its API returns them."""
    return [
        {"id": start_id + i, "data": {"text": text}, "annotations": [{
            "id": 1000 + start_id + i, "was_cancelled": False, "ground_truth": False, "updated_at": revision,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        }]}
        for i, (label, text) in enumerate(rows)
    ]


class AnnotatedTasks:
    """Label Studio's side of a training read: the tasks `iter_annotated_tasks` yields (a list,
    or a function of the project id, which may raise) and the count `annotation_count` answers."""

    def __init__(self) -> None:
        self.source, self.count = [], None

    def iter_annotated_tasks(self, ls_project_id, *, page_size=500):
        return iter(self.source(ls_project_id) if callable(self.source) else self.source)

    def annotation_count(self, ls_project_id):
        if self.count is not None:
            return self.count
        return 0 if callable(self.source) else len(self.source)


@pytest.fixture
def reads(monkeypatch):
    fake = AnnotatedTasks()
    monkeypatch.setattr(label_studio, "is_configured", lambda: True)
    monkeypatch.setattr(label_studio, "iter_annotated_tasks", fake.iter_annotated_tasks)
    monkeypatch.setattr(label_studio, "annotation_count", fake.annotation_count)
    return fake


def train_now(reads, project, *, trigger, tasks, count=None):
    """A training now, on these annotated tasks (and Label Studio's count of annotations)."""
    reads.source, reads.count = tasks, count
    return loop.train_now(project, trigger=trigger)


def event(project, action="ANNOTATION_CREATED", annotation_ids=(1,)):
    return WebhookEvent.objects.create(project=project, ls_project_id=project.ls_project_id, action=action,
                                       annotation_ids=list(annotation_ids))


@pytest.fixture
def queued(jobs_sent):
    """Checks sent to the broker, as (project pk, countdown)."""
    return jobs_sent.watch(jobs.CHECK_TRAINING, lambda job: (job.args[0], round(job.countdown, 1)))


def test_a_burst_of_events_queues_one_check(sms_project, queued):
    for i in range(200):
        schedule.on_event(event(sms_project, annotation_ids=[i]))
    assert len(queued) == 1 and queued[0][0] == sms_project.pk and 0 < queued[0][1] <= 2
    # Start Training does not wait for the scheduled check: it moves it to now.
    schedule.on_event(event(sms_project, "START_TRAINING", ()))
    assert len(queued) == 2 and queued[1] == (sms_project.pk, 0.0)
    schedule.on_event(event(sms_project, "START_TRAINING", ()))
    assert len(queued) == 2  # already due now


def test_a_webhook_ack_is_one_read_and_one_insert_once_a_check_is_scheduled(sms_project, queued, client,
                                                                             django_assert_num_queries):
    from tests.conftest import recorded

    body = recorded("webhook-annotation_created")["body"]
    body["project"]["id"] = sms_project.ls_project_id
    client.post("/webhook", data=body, content_type="application/json")  # schedules the check
    assert len(queued) == 1
    with django_assert_num_queries(2):  # the project with its policy, then the event
        response = client.post("/webhook", data=body, content_type="application/json")
    assert response.status_code == 201
    assert len(queued) == 1 and schedule.pending_of(sms_project).events == 2


def test_events_that_do_not_train_queue_nothing(sms_project, queued):
    schedule.on_event(event(sms_project, "PROJECT_UPDATED", ()))
    schedule.on_event(WebhookEvent.objects.create(ls_project_id=99, action="ANNOTATION_CREATED"))
    TrainingPolicy.objects.filter(project=sms_project).update(auto_train=False)
    schedule.on_event(event(sms_project))
    assert queued == []


def test_a_broker_outage_loses_no_event(sms_project, monkeypatch, jobs_sent):
    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobs, "send", down)
    schedule.on_event(event(sms_project))
    sms_project.refresh_from_db()
    assert sms_project.training_check_at is None  # so the next event or reconciliation asks again
    assert schedule.pending_of(sms_project).events == 1


def test_a_check_trains_on_every_annotation_and_consumes_the_events(sms_project, queued, reads):
    rows = sms_rows(60)
    for i in range(30):
        event(sms_project, annotation_ids=[i])
    result = train_now(reads, sms_project, trigger="annotations", tasks=ls_tasks(rows))
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


def test_unchanged_annotations_do_not_make_a_new_version_unless_asked(sms_project, queued, reads):
    tasks = ls_tasks(sms_rows(40))
    first = train_now(reads, sms_project, trigger="quiet", tasks=tasks).run
    event(sms_project)
    again = train_now(reads, sms_project, trigger="quiet", tasks=tasks).run
    assert again.status == TrainingRun.Status.SKIPPED and first.model_version.version in again.detail
    assert schedule.pending_of(sms_project).events == 0
    # An edit (same annotation, new revision) is a change.
    edited = ls_tasks(sms_rows(40), revision="2026-11-23T11:00:00Z")
    assert train_now(reads, sms_project, trigger="quiet", tasks=edited).outcome == "trained"
    # Start Training always trains.
    forced = train_now(reads, sms_project, trigger="start_training", tasks=edited)
    assert forced.outcome == "trained"
    assert ModelVersion.objects.filter(project=sms_project).count() == 3


def test_too_few_annotations_skip_until_the_policy_minimum(sms_project, queued, reads):
    TrainingPolicy.objects.filter(project=sms_project).update(min_annotations=50)
    few = ls_tasks(sms_rows(20))
    run = train_now(reads, sms_project, trigger="quiet", tasks=few).run
    assert run.status == TrainingRun.Status.SKIPPED and "50" in run.detail
    assert not ModelVersion.objects.filter(project=sms_project).exists()


def test_a_training_that_raises_is_recorded_and_the_old_version_keeps_serving(trained_sms_project, queued, reads):
    project, serving = trained_sms_project
    one_class = ls_tasks([("ham", f"just ham {i}") for i in range(30)])
    event(project)
    result = train_now(reads, project, trigger="start_training", tasks=one_class)
    run = result.run
    assert result.outcome == "failed" and run.status == TrainingRun.Status.FAILED
    assert "ham" in run.detail and "spam" in run.detail  # says which labels are missing
    assert run.model_version.status == ModelVersion.Status.FAILED and run.model_version.error
    project.refresh_from_db()
    assert project.serving_version == serving
    assert schedule.pending_of(project).events == 0  # not retried forever: the next event retries


def test_label_studio_errors_are_retried_then_recorded(sms_project, queued, settings, reads):
    settings.LABEL_STUDIO_RETRY_BACKOFF = 0.0
    tasks = ls_tasks(sms_rows(40))
    calls = []

    def flaky(pid):
        calls.append(pid)
        if len(calls) < 3:
            raise LabelStudioError("GET api/tasks/ answered 503: restarting", status_code=503)
        return tasks

    assert train_now(reads, sms_project, trigger="quiet", tasks=flaky, count=40).outcome == "trained"
    assert len(calls) == 3

    def down(pid):
        calls.append(pid)
        raise LabelStudioError("GET api/tasks/ failed: connection refused")

    calls.clear()
    result = train_now(reads, sms_project, trigger="start_training", tasks=down)
    assert result.outcome == "failed" and "connection refused" in result.run.detail
    assert len(calls) == settings.LABEL_STUDIO_RETRIES
    # A client error is not retried: it will not get better.
    calls.clear()

    def forbidden(pid):
        calls.append(pid)
        raise LabelStudioError("GET api/tasks/ answered 403: no access", status_code=403)

    assert train_now(reads, sms_project, trigger="start_training", tasks=forbidden).outcome == "failed"
    assert len(calls) == 1


def test_one_training_per_project_at_a_time(sms_project, queued, reads):
    assert leases.acquire(sms_project.pk, "worker-a", kind="training")
    result = train_now(reads, sms_project, trigger="start_training", tasks=[])
    assert result.outcome == "busy" and not TrainingRun.objects.exists()
    # It asks to look again when the lease runs out.
    assert queued and queued[-1][0] == sms_project.pk and queued[-1][1] >= 2
    assert not leases.renew(sms_project.pk, "worker-b", kind="training")
    leases.release(sms_project.pk, "worker-b", kind="training")  # not the owner: no effect
    assert not leases.acquire(sms_project.pk, "worker-b", kind="training")
    leases.release(sms_project.pk, "worker-a", kind="training")
    assert leases.acquire(sms_project.pk, "worker-b", kind="training")


def test_a_dead_workers_run_is_abandoned_and_its_events_trained_again(sms_project, queued, reads):
    """A worker killed mid-training: its lease lapses, the next check fails its run and trains."""
    event(sms_project)
    assert leases.acquire(sms_project.pk, "dead-worker", kind="training", seconds=0.01)
    stuck_version = ModelVersion.objects.create(project=sms_project, version="p7-v1", label_config_digest="x")
    stuck = TrainingRun.objects.create(project=sms_project, trigger="quiet", owner="dead-worker",
                                       model_version=stuck_version, events_through=1)
    Project.objects.filter(pk=sms_project.pk).update(training_lease_until=timezone.now() - timedelta(seconds=1))
    result = train_now(reads, sms_project, trigger="quiet", tasks=ls_tasks(sms_rows(30)))
    assert result.outcome == "trained"
    stuck.refresh_from_db()
    stuck_version.refresh_from_db()
    assert stuck.status == TrainingRun.Status.FAILED and "worker stopped" in stuck.detail
    assert stuck_version.status == ModelVersion.Status.FAILED
    sms_project.refresh_from_db()
    assert sms_project.serving_version == result.run.model_version and sms_project.serving_version.version == "p7-v2"


def test_if_not_worse_keeps_the_better_version_serving(trained_sms_project, queued, reads):
    project, serving = trained_sms_project
    ModelVersion.objects.filter(pk=serving.pk).update(metrics={**serving.metrics, "macro_f1": 1.0})
    TrainingPolicy.objects.filter(project=project).update(promotion="if_not_worse", max_macro_f1_drop=0.0)
    project.refresh_from_db()
    rows = sms_rows(60)
    noisy = [("spam" if label == "ham" and i % 3 == 0 else label, text) for i, (label, text) in enumerate(rows)]
    run = train_now(reads, project, trigger="start_training", tasks=ls_tasks(noisy)).run
    assert run.status == TrainingRun.Status.SUCCEEDED and not run.promoted
    assert "kept the serving version" in run.detail
    assert run.model_version.status == ModelVersion.Status.READY
    project.refresh_from_db()
    assert project.serving_version == serving


def test_the_check_reschedules_itself_until_the_quiet_period_ends(sms_project, queued):
    event(sms_project)
    assert str(loop.run_check(sms_project.pk)) == "later"
    assert queued and queued[-1][0] == sms_project.pk and 0 < queued[-1][1] <= 2
    assert not TrainingRun.objects.exists()


def test_reconciliation_asks_again_for_events_a_lost_message_left(sms_project, queued):
    WebhookEvent.objects.filter(pk=event(sms_project).pk).update(received_at=timezone.now() - timedelta(minutes=10))
    assert loop.reconcile() == {"checks_requested": 1, "changes_noticed": 0}
    assert queued == [(sms_project.pk, 0.0)]
    assert loop.reconcile()["checks_requested"] == 0  # a check is on its way



def test_web_processes_connect_to_the_broker_before_their_first_webhook(tmp_path):
    """gunicorn's post_worker_init warms the producer, so the first check a webhook schedules
    does not pay for the connection while the process's other requests wait. A fresh process,
    as a web worker is: the producer the next apply_async gets is connected only after it."""
    import os
    import subprocess
    import sys

    code = (
        "import django; django.setup()\n"
        "from orchestrator.celery import app, warm_producer\n"
        "def connected():\n"
        "    with app.producer_or_acquire() as producer:\n"
        "        return producer.connection.connected\n"
        "print(connected(), end=' '); warm_producer(); print(connected())\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "orchestrator.settings", "ALO_DATA_DIR": str(tmp_path)}
    env.pop("CELERY_BROKER_URL", None)  # the embedded broker: no server needed
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"], result.stdout


@pytest.mark.django_db(transaction=True)
def test_every_request_thread_of_a_web_worker_is_connected_before_its_first_request():
    """gunicorn's post_worker_init opens each gthread request thread's database connection,
    so no webhook ack pays for one (300 ms measured on PostgreSQL under load)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from django.db import connection

    from orchestrator import gunicorn_conf

    def threads_connected(pool, n):  # one probe per thread, as the warm-up places its tasks
        barrier = threading.Barrier(n)

        def probe():
            barrier.wait(timeout=10)
            connected = connection.connection is not None
            barrier.wait(timeout=10)  # every thread has looked: now each closes its own
            connection.close()
            return threading.get_ident(), connected

        return [f.result(timeout=30) for f in [pool.submit(probe) for _ in range(n)]]

    with ThreadPoolExecutor(max_workers=4) as cold:
        assert [connected for _, connected in threads_connected(cold, 4)] == [False] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        gunicorn_conf._connect_request_threads(SimpleNamespace(tpool=pool, cfg=SimpleNamespace(threads=4)))
        seen = threads_connected(pool, 4)
        assert len({ident for ident, _ in seen}) == 4 and all(connected for _, connected in seen)
