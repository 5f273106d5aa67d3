"""Celery tasks: thin wrappers over services.training_loop and services.scoring.

acks_late: a message is acknowledged only when its task returns, so a worker killed
mid-job leaves it to be delivered again; leases and recorded progress make a second
delivery harmless (a training re-reads its data; a scoring run resumes at its cursor).
"""
from __future__ import annotations

from celery import shared_task

from orchestrator.learning.models import Project
from orchestrator.learning.services import scoring, training_loop


@shared_task(acks_late=True, reject_on_worker_lost=True)
def check_training(project_id: int) -> str:
    return str(training_loop.check_training(project_id))


@shared_task(acks_late=True)
def reconcile_training() -> dict:
    return {**training_loop.reconcile(), **scoring.reconcile()}


@shared_task(acks_late=True, reject_on_worker_lost=True)
def score_project(run_id: int) -> str:
    return str(scoring.run_scoring(run_id))


@shared_task(acks_late=True)
def rescore_project(ls_project_id: int) -> str:
    """What a per-project periodic task (django-celery-beat) calls (see scoring.scheduled_mode)."""
    project = Project.objects.filter(ls_project_id=ls_project_id).first()
    if project is None:
        return "unknown project"
    run = scoring.request_scoring(project, trigger="schedule", mode=scoring.scheduled_mode(project))
    return f"run={run.pk} tag={run.tag}" if run else "nothing to score with"


@shared_task(acks_late=True)
def clean_up_predictions(project_id: int, attempt: int = 0) -> str:
    """Delete the service's older prediction tags of a project (after a push switched it)."""
    return scoring.clean_up(project_id, attempt)
