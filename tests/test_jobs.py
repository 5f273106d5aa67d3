"""The seam for background work: by task name, after commit, a broker failure handled in one place."""
from __future__ import annotations

import pytest
from django.db import transaction

from orchestrator import jobs


@pytest.fixture
def broker(monkeypatch):
    """What reached the broker: (task, args, countdown)."""
    sent = []
    monkeypatch.setattr(jobs, "send", lambda task, args, countdown: sent.append((task, args, countdown)))
    return sent


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_a_job_is_sent_at_once(broker):
    assert jobs.enqueue(jobs.CHECK_TRAINING, 3, countdown=2.5) is True
    assert broker == [(jobs.CHECK_TRAINING, (3,), 2.5)]
    jobs.enqueue(jobs.RUN_SCORING, 9, countdown=-4)  # "now" at the latest
    assert broker[-1] == (jobs.RUN_SCORING, (9,), 0.0)


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_a_job_waits_for_the_commit_and_is_dropped_by_a_rollback(broker):
    with transaction.atomic():
        jobs.enqueue(jobs.CLEAN_UP_PREDICTIONS, 4, 0)
        assert broker == []  # a worker must not read rows this transaction has not committed
    assert broker == [(jobs.CLEAN_UP_PREDICTIONS, (4, 0), 0.0)]
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            jobs.enqueue(jobs.RUN_SCORING, 5)
            raise RuntimeError("the service failed")
    assert broker == [(jobs.CLEAN_UP_PREDICTIONS, (4, 0), 0.0)]


@pytest.mark.django_db(transaction=True)
def test_a_broker_that_refuses_is_logged_and_the_caller_undoes_its_schedule(monkeypatch, caplog):
    def down(task, args, countdown):
        raise ConnectionError("broker down")

    undone = []
    monkeypatch.setattr(jobs, "send", down)
    assert jobs.enqueue(jobs.CHECK_TRAINING, 3, on_failure=lambda: undone.append(3)) is False
    assert undone == [3]
    assert any("job_not_queued" in r.getMessage() and jobs.CHECK_TRAINING in r.getMessage() for r in caplog.records)


def test_every_task_the_services_ask_for_is_registered_under_its_name():
    from orchestrator.celery import app
    from orchestrator.learning import tasks  # noqa: F401 - the worker imports it (autodiscovery)

    names = {jobs.CHECK_TRAINING, jobs.RUN_SCORING, jobs.CLEAN_UP_PREDICTIONS, jobs.RESCORE_PROJECT,
             jobs.RECONCILE_TRAINING, jobs.RECONCILE_SCORING, jobs.ENSURE_WEBHOOK, jobs.ENSURE_WEBHOOKS,
             jobs.PRUNE_EVENTS, jobs.RESUME_CLEANUPS, jobs.SYNC_ANNOTATIONS}
    assert names <= set(app.tasks)
    from django.conf import settings

    assert {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()} == {
        jobs.RECONCILE_TRAINING, jobs.RECONCILE_SCORING, jobs.ENSURE_WEBHOOKS, jobs.PRUNE_EVENTS,
        jobs.RESUME_CLEANUPS}


def test_each_job_goes_to_its_queue_and_every_queue_is_one_a_worker_serves():
    """Trainings, pushes and housekeeping never wait behind each other (one worker per queue)."""
    from django.conf import settings

    from orchestrator.celery import app

    queue_of = {name: app.amqp.router.route({}, name)["queue"].name for name in (
        jobs.CHECK_TRAINING, jobs.RECONCILE_TRAINING, jobs.SYNC_ANNOTATIONS, jobs.RUN_SCORING, jobs.RESCORE_PROJECT,
        jobs.RECONCILE_SCORING, jobs.CLEAN_UP_PREDICTIONS, jobs.RESUME_CLEANUPS, jobs.ENSURE_WEBHOOK,
        jobs.ENSURE_WEBHOOKS, jobs.PRUNE_EVENTS)}
    assert {name for name, queue in queue_of.items() if queue == "training"} == {
        jobs.CHECK_TRAINING, jobs.RECONCILE_TRAINING, jobs.SYNC_ANNOTATIONS}
    assert {name for name, queue in queue_of.items() if queue == "scoring"} == {
        jobs.RUN_SCORING, jobs.RESCORE_PROJECT, jobs.RECONCILE_SCORING}
    assert set(queue_of.values()) == set(settings.ALO_QUEUES)


def test_no_service_imports_a_tasks_module():
    """Services reach the worker through the seam only; the tasks import services."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "orchestrator"
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "tasks.py" or "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            offenders += [f"{path.relative_to(root)}: {name}" for name in names if name.split(".")[-1] == "tasks"
                          or ".tasks." in name]
    assert offenders == []
