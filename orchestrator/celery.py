"""The Celery application: background training and scoring jobs.

Broker and result backend come from settings (`CELERY_*`); with no broker configured they
are kombu's filesystem transport under the data folder, so `make run` needs no server.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import after_setup_logger, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _lower_priority(**kwargs) -> None:
    """Jobs yield the CPU to the web processes on a shared machine (ALO_WORKER_NICE, default 10).

    Webhook acks and /predict answer Label Studio while it waits; a training or a push
    can take a few seconds longer. The worker's pool processes inherit the niceness.
    """
    from django.conf import settings

    increment = settings.ALO_WORKER_NICE
    if increment > 0:
        try:
            os.nice(increment)
        except OSError:  # not permitted here: run at normal priority
            pass


@after_setup_logger.connect
def _quiet_task_lines(**kwargs) -> None:
    """Celery's own "received"/"succeeded" line per task, below WARNING: a burst's training
    checks (one every 2 s) drowned the service's lines, which say once what each job did."""
    import logging

    for name in ("celery.app.trace", "celery.worker.strategy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def warm_producer() -> None:
    """Connect this process's producer to the broker before its first task is sent.

    A web process otherwise pays for it inside the first webhook that schedules a check
    (finalizing the app, loading the result backend, connecting: 130 ms quiet, 400-700 ms
    measured during a burst, while the other request threads of the process wait on it).
    A broker that cannot be reached now is only logged: sending retries when it is back.
    """
    import logging

    try:
        app.tasks  # noqa: B018 - finalizes the app: every task registered
        app.backend  # noqa: B018 - the result backend's class is looked up on first use
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
    except Exception as exc:  # the broker may be down at start; nothing here must stop serving
        logging.getLogger(__name__).warning("broker_not_reached_at_start error=%s", exc)
