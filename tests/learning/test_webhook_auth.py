"""Webhooks signed by the service's own secret header: /webhook refuses forgeries, the service
keeps its webhook in each Label Studio project, old events are pruned."""
from __future__ import annotations

import base64
from datetime import timedelta

import orjson
import pytest
from django.utils import timezone

from orchestrator.gateways import label_studio, label_studio_webhooks
from orchestrator.learning import webhook_auth
from orchestrator.learning.models import WebhookEvent
from tests.conftest import recorded
from tests.factories import webhook_event

SECRET = "a-long-random-secret"
HEADER = "HTTP_X_ALO_WEBHOOK_SECRET"


@pytest.fixture
def secret(settings):
    settings.ALO_WEBHOOK_SECRET = SECRET
    settings.ALO_SERVICE_URL = "http://alo.internal:9090/"
    return SECRET


def send(client, body=None, **headers):
    body = recorded("webhook-annotation_created")["body"] if body is None else body
    response = client.generic("POST", "/webhook", orjson.dumps(body), content_type="application/json", **headers)
    return response.status_code, orjson.loads(response.content)


@pytest.mark.django_db
def test_with_a_secret_a_webhook_without_it_is_refused_and_stores_nothing(client, secret):
    status, body = send(client)
    assert status == 401 and "X-Alo-Webhook-Secret" in body["detail"]
    status, _ = send(client, **{HEADER: "a-guess"})
    assert status == 401
    assert not WebhookEvent.objects.exists()
    status, body = send(client, **{HEADER: SECRET})
    assert status == 201 and WebhookEvent.objects.get(pk=body["event"]).action == "ANNOTATION_CREATED"


@pytest.mark.django_db
def test_basic_auth_lets_label_studios_start_training_through(client, secret, settings):
    settings.BASIC_AUTH_USER, settings.BASIC_AUTH_PASS = "ls", "pw"
    start = recorded("webhook-start_training")["body"]
    good = "Basic " + base64.b64encode(b"ls:pw").decode()
    assert send(client, start, HTTP_AUTHORIZATION=good)[0] == 201
    assert send(client, start, HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"ls:no").decode())[0] == 401


@pytest.mark.django_db
def test_the_operator_may_keep_accepting_unsigned_webhooks(client, secret, settings):
    settings.ALO_WEBHOOK_ACCEPT_UNSIGNED = True
    assert send(client)[0] == 201


@pytest.mark.django_db
def test_without_a_secret_webhooks_are_accepted_as_label_studio_sends_them(client):
    assert send(client)[0] == 201


@pytest.mark.django_db
def test_a_webhook_body_over_the_limit_is_a_413_and_stores_nothing(client, settings):
    settings.ALO_WEBHOOK_MAX_BYTES = 1000
    body = {**recorded("webhook-annotation_created")["body"], "padding": "x" * 2000}
    status, answer = send(client, body)
    assert status == 413 and "at most 1000" in answer["detail"]
    assert not WebhookEvent.objects.exists()


class FakeWebhooks:
    """Label Studio's webhook API for one project, with its semantics (a PATCH sets the actions it is given)."""

    def __init__(self, hooks):
        self.hooks = hooks
        self.calls = []

    def list_webhooks(self, ls_project_id):
        self.calls.append(("list", ls_project_id))
        return [dict(h) for h in self.hooks if h["project"] == ls_project_id]

    def create_webhook(self, ls_project_id, data):
        self.calls.append(("create", data))
        hook = {"id": len(self.hooks) + 1, "project": ls_project_id, **data}
        self.hooks.append(hook)
        return hook

    def update_webhook(self, webhook_id, data):
        self.calls.append(("update", webhook_id, data))
        hook = next(h for h in self.hooks if h["id"] == webhook_id)
        hook.update({"actions": [], **data})
        return hook


@pytest.fixture
def hooks(monkeypatch, settings, jobs_sent):
    settings.LABEL_STUDIO_URL, settings.LABEL_STUDIO_API_KEY = "http://ls.internal:8080", "key"
    monkeypatch.setattr(webhook_auth, "_asked", {})
    fake = FakeWebhooks([])
    for name in ("list_webhooks", "create_webhook", "update_webhook"):
        monkeypatch.setattr(label_studio_webhooks, name, getattr(fake, name))
    return fake


def test_the_service_creates_its_signed_webhook_when_the_project_has_none(sms_project, secret, hooks):
    assert webhook_auth.ensure_webhook(sms_project.pk) == "created"
    (hook,) = hooks.hooks
    assert hook["url"] == "http://alo.internal:9090/webhook" and hook["project"] == 7
    assert hook["headers"] == {"X-Alo-Webhook-Secret": SECRET} and hook["is_active"] and hook["send_payload"]
    assert set(webhook_auth.ACTIONS) <= set(hook["actions"])
    assert webhook_auth.ensure_webhook(sms_project.pk) == "ok"  # nothing to repair: one read, no write
    assert [c[0] for c in hooks.calls] == ["list", "create", "list"]


def test_label_studios_own_webhook_at_the_same_url_gets_the_header_and_another_backends_never(sms_project, secret,
                                                                                              hooks):
    hooks.hooks += [
        {"id": 1, "project": 7, "url": "http://alo.internal:9090/webhook", "headers": {}, "actions": [],
         "send_for_all_actions": True, "send_payload": True, "is_active": True},
        {"id": 2, "project": 7, "url": "http://other-model:9090/webhook", "headers": {}, "actions": [],
         "send_for_all_actions": True, "send_payload": True, "is_active": True},
    ]
    assert webhook_auth.ensure_webhook(sms_project.pk) == "repaired 1"
    assert hooks.hooks[0]["headers"] == {"X-Alo-Webhook-Secret": SECRET} and hooks.hooks[0]["send_for_all_actions"]
    assert hooks.hooks[1]["headers"] == {}  # the secret never goes to another backend
    assert len(hooks.hooks) == 2  # no second webhook: events do not arrive twice
    # Someone edits the header away (or turns the webhook off): the next pass puts it back.
    hooks.hooks[0].update(headers={"X-Alo-Webhook-Secret": "old"}, is_active=False)
    assert webhook_auth.ensure_webhook(sms_project.pk) == "repaired 1"
    assert hooks.hooks[0]["headers"] == {"X-Alo-Webhook-Secret": SECRET} and hooks.hooks[0]["is_active"]


def test_a_webhook_without_send_for_all_actions_gets_the_actions_the_service_needs(sms_project, secret, hooks):
    hooks.hooks.append({"id": 1, "project": 7, "url": "http://alo.internal:9090/webhook",
                        "headers": {"X-Alo-Webhook-Secret": SECRET, "X-Other": "kept"}, "actions": ["PROJECT_UPDATED"],
                        "send_for_all_actions": False, "send_payload": True, "is_active": True})
    assert webhook_auth.ensure_webhook(sms_project.pk) == "repaired 1"
    assert set(hooks.hooks[0]["actions"]) == {"PROJECT_UPDATED", *webhook_auth.ACTIONS}
    assert hooks.hooks[0]["headers"] == {"X-Alo-Webhook-Secret": SECRET, "X-Other": "kept"}


def test_without_the_services_url_nothing_is_sent_and_the_log_says_why(sms_project, secret, hooks, settings, caplog):
    settings.ALO_SERVICE_URL = ""
    assert webhook_auth.ensure_webhook(sms_project.pk) == "ALO_SERVICE_URL unset"
    assert not hooks.calls and "ALO_SERVICE_URL is unset" in caplog.text


def test_the_hourly_pass_goes_on_past_a_project_label_studio_fails_on(sms_project, secret, hooks, monkeypatch):
    from orchestrator.learning.projects import setup_project
    from tests.conftest import SMS_CONFIG

    other = setup_project(project_key="8.1717171717", label_config=SMS_CONFIG)
    listed = hooks.list_webhooks

    def failing_for_7(ls_project_id):
        if ls_project_id == 7:
            raise label_studio.LabelStudioError("GET api/webhooks/ answered 503", status_code=503)
        return listed(ls_project_id)

    monkeypatch.setattr(label_studio_webhooks, "list_webhooks", failing_for_7)
    assert webhook_auth.ensure_all() == {"ensured": 1, "failed": 1}
    assert [h["project"] for h in hooks.hooks] == [other.ls_project_id]


def test_setup_asks_for_the_webhook_at_most_every_ten_minutes(sms_project, secret, hooks, jobs_sent):
    from orchestrator import jobs

    asked = jobs_sent.watch(jobs.ENSURE_WEBHOOK, lambda job: job.args)
    assert webhook_auth.request_ensure(sms_project.pk, now=1000.0)
    assert not webhook_auth.request_ensure(sms_project.pk, now=1000.0 + 599)
    assert webhook_auth.request_ensure(sms_project.pk, now=1000.0 + 601)
    assert asked == [(sms_project.pk,), (sms_project.pk,)]


def test_processed_and_ignorable_events_are_pruned_after_the_retention_and_pending_ones_stay(sms_project, settings):
    settings.ALO_EVENT_RETENTION_DAYS = 30
    old = timezone.now() - timedelta(days=31)
    done = webhook_event(sms_project)
    pending = webhook_event(sms_project)
    ignorable = webhook_event(sms_project, action="PROJECT_UPDATED")
    recent = webhook_event(sms_project)
    WebhookEvent.objects.filter(pk__in=[done.pk, pending.pk, ignorable.pk]).update(received_at=old)
    WebhookEvent.objects.filter(pk__in=[done.pk, recent.pk]).update(processed_at=old)
    WebhookEvent.objects.filter(pk=recent.pk).update(processed_at=timezone.now())
    assert webhook_auth.prune_events() == 2
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {pending.pk, recent.pk}
