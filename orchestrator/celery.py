"""The Celery application: background training and scoring jobs.

Broker and result backend come from settings (`CELERY_*`); with no broker configured they
are kombu's filesystem transport under the data folder, so `make run` needs no server.
"""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init

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
    increment = int(os.environ.get("ALO_WORKER_NICE", "10"))
    if increment > 0:
        try:
            os.nice(increment)
        except OSError:  # not permitted here: run at normal priority
            pass
