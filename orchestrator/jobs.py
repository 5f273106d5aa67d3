"""The one seam for background work: services ask for Celery tasks by name, after their transaction commits.

No service imports a tasks module: the worker's tasks (orchestrator/learning/tasks.py) import
services, never the reverse. A broker that cannot be reached is handled here, the same way for
every job: logged, and the caller's `on_failure` undoes what would otherwise wait for it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction

logger = logging.getLogger(__name__)

# Task names are part of the deployment: messages in a broker and django-celery-beat's
# periodic tasks name them, so they outlive a rename of the function that runs them.
CHECK_TRAINING = "orchestrator.learning.tasks.check_training"  # (project pk)
RUN_SCORING = "orchestrator.learning.tasks.run_scoring"  # (scoring run pk)
CLEAN_UP_PREDICTIONS = "orchestrator.learning.tasks.clean_up_predictions"  # (project pk, attempt, after task id, generation)
RESCORE_PROJECT = "orchestrator.learning.tasks.rescore_project"  # (Label Studio project id): a schedule's task
RECONCILE_TRAINING = "orchestrator.learning.tasks.reconcile_training"  # beat, every ALO_RECONCILE_SECONDS
RECONCILE_SCORING = "orchestrator.learning.tasks.reconcile_scoring"  # beat, every ALO_RECONCILE_SECONDS
ENSURE_WEBHOOK = "orchestrator.learning.tasks.ensure_webhook"  # (project pk): after /setup
ENSURE_WEBHOOKS = "orchestrator.learning.tasks.ensure_webhooks"  # beat, hourly
PRUNE_EVENTS = "orchestrator.learning.tasks.prune_events"  # beat, hourly
RESUME_CLEANUPS = "orchestrator.learning.tasks.resume_cleanups"  # beat, every ALO_RECONCILE_SECONDS
SYNC_ANNOTATIONS = "orchestrator.learning.tasks.sync_annotations"  # (project pk, full 0/1): the annotation store


@dataclass(frozen=True)
class Job:
    task: str
    args: tuple[int, ...]
    countdown: float = 0.0


def enqueue(task: str, *args: int, countdown: float = 0.0, on_failure: Callable[[], None] | None = None) -> bool:
    """Ask a worker to run `task(*args)` in `countdown` seconds, once the current transaction commits.

    Arguments are ids: the task reads the rows it needs. Outside a transaction the message is
    sent at once, and the answer says whether the broker took it. Inside one it is sent when
    the transaction commits (nothing is sent if it rolls back) and the answer is True.
    """
    job = Job(task, tuple(args), max(0.0, countdown))
    outcome: list[bool] = []
    transaction.on_commit(lambda: outcome.append(_dispatch(job, on_failure)))
    return outcome[0] if outcome else True


def _dispatch(job: Job, on_failure: Callable[[], None] | None) -> bool:
    try:
        send(job.task, job.args, job.countdown)
    except Exception:
        # What was asked for is recorded in the database: reconciliation (or the next trigger) asks again.
        logger.exception("job_not_queued task=%s args=%s", job.task, list(job.args))
        if on_failure is not None:
            on_failure()
        return False
    return True


def send(task: str, args: tuple[int, ...], countdown: float) -> None:
    """The one call that reaches the broker."""
    from orchestrator.celery import app

    # ignore_result: nothing waits for a job's return value (no result-backend subscription per message).
    app.send_task(task, args=list(args), countdown=countdown, ignore_result=True)
