"""Celery tasks: each takes ids and calls one service. Services ask for them through `orchestrator.jobs`.

acks_late: a message is acknowledged only when its task returns, so a worker killed
mid-job leaves it to be delivered again; leases and recorded progress make a second
delivery harmless (a training re-reads its data; a scoring run resumes at its cursor).
"""
from __future__ import annotations

from celery import shared_task
from django.conf import settings

from orchestrator import jobs
from orchestrator.learning import annotation_store, webhook_auth
from orchestrator.learning.scoring import cleanup, job, runs
from orchestrator.learning.training import loop


@shared_task(name=jobs.CHECK_TRAINING, acks_late=True, reject_on_worker_lost=True)
def check_training(project_pk: int) -> str:
    return str(loop.run_check(project_pk))


@shared_task(name=jobs.RECONCILE_TRAINING, acks_late=True)
def reconcile_training() -> dict:
    return loop.reconcile()


@shared_task(name=jobs.RECONCILE_SCORING, acks_late=True)
def reconcile_scoring() -> dict:
    return runs.reconcile()


@shared_task(name=jobs.RUN_SCORING, acks_late=True, reject_on_worker_lost=True)
def run_scoring(run_pk: int) -> str:
    return str(job.run_scoring(run_pk))


@shared_task(name="orchestrator.learning.tasks.score_project", acks_late=True, reject_on_worker_lost=True)
def score_project(run_pk: int) -> str:
    """`run_scoring` under the name an earlier release sent it by (messages still queued at an upgrade)."""
    return str(job.run_scoring(run_pk))


@shared_task(name=jobs.RESCORE_PROJECT, acks_late=True)
def rescore_project(ls_project_id: int) -> str:
    """What a project's re-scoring schedule (a django-celery-beat periodic task) runs."""
    return runs.rescore_on_schedule(ls_project_id)


@shared_task(name=jobs.CLEAN_UP_PREDICTIONS, acks_late=True)
def clean_up_predictions(project_pk: int, attempt: int = 0, after_id: int = 0, generation: int = 0) -> str:
    """Delete the service's older prediction tags of a project (after a push switched it)."""
    return cleanup.clean_up(project_pk, attempt, after_id, generation)


@shared_task(name=jobs.RESUME_CLEANUPS, acks_late=True)
def resume_cleanups() -> int:
    """Beat's pass: clean-ups that stopped moving (a lost message, a restart) go on from where they stopped."""
    return cleanup.resume_stalled()


@shared_task(name=jobs.ENSURE_WEBHOOK, acks_late=True)
def ensure_webhook(project_pk: int) -> str:
    """Create or repair the project's signed webhook in Label Studio (with ALO_WEBHOOK_SECRET)."""
    return webhook_auth.ensure_webhook(project_pk)


@shared_task(name=jobs.SYNC_ANNOTATIONS, acks_late=True, reject_on_worker_lost=True)
def sync_annotations(project_pk: int, full: int = 0) -> str:
    """Bring a project's annotation store up to Label Studio (whole on connect or when asked)."""
    return annotation_store.sync_now(project_pk, full=bool(full))


@shared_task(name=jobs.ENSURE_WEBHOOKS, acks_late=True)
def ensure_webhooks() -> dict:
    return webhook_auth.ensure_all()


@shared_task(name=jobs.PRUNE_EVENTS, acks_late=True)
def prune_events() -> dict:
    """Beat's hourly pruning: processed events, and the stored pools of runs long over."""
    return {"events": webhook_auth.prune_events(),
            "pools": cleanup.prune_pools(settings.ALO_EVENT_RETENTION_DAYS)}
