"""Celery tasks of the training loop: thin wrappers over services.training_loop.

acks_late: a message is acknowledged only when its task returns, so a worker killed
mid-training leaves it to be delivered again; the lease and the pending events make a
second delivery harmless.
"""
from __future__ import annotations

from celery import shared_task

from orchestrator.learning.services import training_loop


@shared_task(acks_late=True, reject_on_worker_lost=True)
def check_training(project_id: int) -> str:
    return str(training_loop.check_training(project_id))


@shared_task(acks_late=True)
def reconcile_training() -> dict:
    return training_loop.reconcile()
