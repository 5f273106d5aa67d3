"""The service's own webhook in each connected Label Studio project, carrying a secret header.

Label Studio creates a webhook to `<backend url>/webhook` when a model is connected, with no
headers and no basic auth, so anyone who can reach /webhook could pose as it. With
ALO_WEBHOOK_SECRET set, the service keeps a webhook of its own in each project, at
ALO_SERVICE_URL/webhook, carrying the secret in WEBHOOK_SECRET_HEADER (it adds the header to
Label Studio's auto-created webhook when that one points at the same URL, so events do not
arrive twice), and /webhook refuses calls without it. Only webhooks at the service's own URL
ever get the secret: another backend's webhook in the same project never sees it.
"""
from __future__ import annotations

import hmac
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from orchestrator import jobs
from orchestrator.gateways import label_studio, label_studio_webhooks
from orchestrator.learning.events import TRAINING_EVENTS
from orchestrator.learning.models import Project, WebhookEvent

logger = logging.getLogger(__name__)

WEBHOOK_SECRET_HEADER = "X-Alo-Webhook-Secret"
# What the service acts on (training events, tasks created and deleted); Label Studio's Start Training comes by
# another path (its ML backend call, with basic auth).
ACTIONS = ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_CREATED",
           "TASKS_DELETED"]


def secret_configured() -> bool:
    return bool(settings.ALO_WEBHOOK_SECRET)


def signed(header_value: str | None) -> bool:
    """The request carries the configured secret (constant-time comparison)."""
    if not secret_configured() or not header_value:
        return False
    return hmac.compare_digest(header_value.encode(), settings.ALO_WEBHOOK_SECRET.encode())


def accepts(secret_header: str | None, *, basic_auth_passed: bool) -> bool:
    """Whether /webhook takes a call: always without a secret configured (or with unsigned calls
    accepted by the operator's choice); otherwise with the secret, or with basic auth when that
    is on (`basic_auth_passed`: the edge checked the credentials)."""
    if not secret_configured() or settings.ALO_WEBHOOK_ACCEPT_UNSIGNED or signed(secret_header):
        return True
    return basic_auth_passed


def webhook_url() -> str:
    return settings.ALO_SERVICE_URL.rstrip("/") + "/webhook" if settings.ALO_SERVICE_URL else ""


# /setup asks for a look at the project's webhook at most this often per web process (Label
# Studio calls /setup before every batch of predictions; a connection is what matters).
ENSURE_EVERY_SECONDS = 600.0
_asked: dict[int, float] = {}


def request_ensure(project_pk: int, *, now: float | None = None) -> bool:
    """Ask a worker to create or repair the project's webhook (throttled); whether it was asked."""
    if not secret_configured() or not label_studio.is_configured():
        return False
    now = time.monotonic() if now is None else now
    if now - _asked.get(project_pk, -ENSURE_EVERY_SECONDS) < ENSURE_EVERY_SECONDS:
        return False
    _asked[project_pk] = now
    jobs.enqueue(jobs.ENSURE_WEBHOOK, project_pk)  # lost: beat's hourly pass repairs it
    return True


def ensure_webhook(project_pk: int) -> str:
    """Create or repair the project's signed webhook in Label Studio; says what it did."""
    project = Project.objects.filter(pk=project_pk).first()
    if project is None or not secret_configured() or not label_studio.is_configured():
        return "nothing to do"
    url = webhook_url()
    if not url:
        logger.warning("webhook_not_ensured project=%s reason=ALO_SERVICE_URL is unset (the address Label Studio "
                       "reaches this service at)", project.ls_project_id)
        return "ALO_SERVICE_URL unset"
    ls_id = project.ls_project_id
    ours = [hook for hook in label_studio_webhooks.list_webhooks(ls_id)
            if str(hook.get("url") or "").rstrip("/") == url and hook.get("project") in (None, ls_id)]
    if not ours:
        label_studio_webhooks.create_webhook(ls_id, {"url": url, "send_payload": True, "send_for_all_actions": False,
                                            "actions": ACTIONS, "headers": {WEBHOOK_SECRET_HEADER:
                                                                            settings.ALO_WEBHOOK_SECRET},
                                            "is_active": True})
        logger.info("webhook_created project=%s url=%s", ls_id, url)
        return "created"
    repaired = 0
    for hook in ours:
        headers = hook.get("headers") if isinstance(hook.get("headers"), dict) else {}
        actions = list(hook.get("actions") or [])
        wanted_actions = actions if hook.get("send_for_all_actions") else sorted(set(actions) | set(ACTIONS))
        if signed(headers.get(WEBHOOK_SECRET_HEADER)) and hook.get("is_active") and set(wanted_actions) == set(actions):
            continue
        label_studio_webhooks.update_webhook(int(hook["id"]), {
            "headers": {**headers, WEBHOOK_SECRET_HEADER: settings.ALO_WEBHOOK_SECRET}, "is_active": True,
            "actions": wanted_actions, "send_payload": True})
        repaired += 1
    if repaired:
        logger.info("webhook_repaired project=%s url=%s webhooks=%s", ls_id, url, repaired)
        return f"repaired {repaired}"
    return "ok"


def ensure_all() -> dict[str, int]:
    """Beat's hourly pass over every project; one project's failure never stops the others."""
    done = failed = 0
    if not secret_configured() or not label_studio.is_configured():
        return {"ensured": 0, "failed": 0}
    for pk in Project.objects.values_list("pk", flat=True):
        try:
            ensure_webhook(pk)
            done += 1
        except Exception as exc:  # Label Studio down, a project deleted there: next hour
            logger.warning("webhook_not_ensured project_pk=%s error=%s", pk, exc)
            failed += 1
    return {"ensured": done, "failed": failed}


def prune_events() -> int:
    """Delete processed events older than ALO_EVENT_RETENTION_DAYS (pending ones always stay)."""
    days = settings.ALO_EVENT_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    # Training events are done once processed; the others (and those of unknown projects) never wait.
    done = Q(processed_at__lt=cutoff) | Q(received_at__lt=cutoff) & (Q(project=None) | ~Q(action__in=TRAINING_EVENTS))
    deleted, _ = WebhookEvent.objects.filter(done).delete()
    return deleted
