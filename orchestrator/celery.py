"""The Celery application: background training and scoring jobs.

Broker and result backend come from settings (`CELERY_*`); with no broker configured they
are kombu's filesystem transport under the data folder, so `make run` needs no server.
"""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
