"""What a call to /webhook or the legacy /train leads to: the event recorded, then a training check or a push asked for.

Label Studio waits on the answer (a 1 s timeout, no retry), so nothing here trains or
scores: it records, and asks for jobs. An ack slower than ALO_SLOW_ACK_MS is logged with
its parts (`webhook_slow`).
"""
from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from orchestrator.learning import events
from orchestrator.learning.models import WebhookEvent
from orchestrator.learning.scoring import runs
from orchestrator.learning.training import schedule

logger = logging.getLogger(__name__)


def receive_webhook(payload: Any) -> WebhookEvent:
    """Record a webhook's event; ask for a training check, or a push of tasks Label Studio created."""
    started = time.perf_counter()
    event, known = events.record_event(payload)
    recorded = time.perf_counter()
    schedule.on_event(event, known)
    if event.action == "TASKS_CREATED":  # new tasks get scored by the serving version
        runs.on_tasks_created(event.project_id)
    done = time.perf_counter()
    if (done - started) * 1000 > settings.ALO_SLOW_ACK_MS:  # say where the time went
        logger.warning("webhook_slow event=%s action=%s total_ms=%.0f record_ms=%.0f schedule_ms=%.0f", event.pk,
                       event.action, (done - started) * 1000, (recorded - started) * 1000, (done - recorded) * 1000)
    return event


def receive_legacy_train(payload: Any) -> WebhookEvent:
    """The legacy POST /train (older Label Studio): a training asked for."""
    event, known = events.record_legacy_train(payload)
    schedule.on_event(event, known)
    return event
