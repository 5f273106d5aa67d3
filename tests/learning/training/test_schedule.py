"""When a project's training is looked at: the pure decision, and checks coalesced per project."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from orchestrator import jobs
from orchestrator.learning.models import TrainingPolicy, WebhookEvent
from orchestrator.learning.training import schedule
from orchestrator.learning.training.schedule import Decision, Pending, decide
from tests.factories import training_policy, webhook_event

T0 = timezone.now()


def pending(events=1, changes=None, forced=False, age=0.0, asked_by="start_training") -> Pending:
    return Pending(events=events, changes=events if changes is None else changes, forced=forced,
                   asked_by=asked_by if forced else "", last_at=T0 - timedelta(seconds=age), through_id=events)


@pytest.mark.parametrize(
    "rules, state, expected",
    [
        ({}, Pending(), Decision(train=False)),
        ({}, pending(forced=True), Decision(train=True, trigger="start_training")),
        ({"auto_train": False}, pending(events=500), Decision(train=False)),
        ({"auto_train": False}, pending(forced=True), Decision(train=True, trigger="start_training")),
        ({"auto_train": False}, pending(forced=True, asked_by="api"), Decision(train=True, trigger="api")),
        ({}, pending(forced=True, asked_by="console"), Decision(train=True, trigger="console")),
        ({}, pending(events=25), Decision(train=True, trigger="annotations")),
        ({}, pending(events=3, changes=30), Decision(train=True, trigger="annotations")),  # a bulk delete
        ({}, pending(events=3, age=20.0), Decision(train=True, trigger="quiet")),
        # Not due: look again at the end of the quiet period or in 2 s, whichever is first.
        ({}, pending(events=3, age=19.5), Decision(train=False, check_at=T0 + timedelta(seconds=0.5))),
        ({}, pending(events=3, age=5.0), Decision(train=False, check_at=T0 + timedelta(seconds=2))),
        ({"quiet_seconds": 0}, pending(events=3), Decision(train=False, check_at=T0 + timedelta(seconds=2))),
        ({"quiet_seconds": 0, "retrain_every": 0}, pending(events=3), Decision(train=False)),
        ({"retrain_every": 0}, pending(events=300, age=1), Decision(train=False, check_at=T0 + timedelta(seconds=2))),
    ],
)
def test_decide(rules, state, expected):
    assert decide(training_policy(**rules), state, T0) == expected


def test_a_burst_of_events_queues_one_check(sms_project, queued_checks):
    for i in range(200):
        schedule.on_event(webhook_event(sms_project, annotation_ids=[i]))
    assert len(queued_checks) == 1 and queued_checks[0][0] == sms_project.pk and 0 < queued_checks[0][1] <= 2
    # Start Training does not wait for the scheduled check: it moves it to now.
    schedule.on_event(webhook_event(sms_project, "START_TRAINING", ()))
    assert len(queued_checks) == 2 and queued_checks[1] == (sms_project.pk, 0.0)
    schedule.on_event(webhook_event(sms_project, "START_TRAINING", ()))
    assert len(queued_checks) == 2  # already due now


def test_a_webhook_ack_is_one_read_and_one_insert_once_a_check_is_scheduled(sms_project, queued_checks, client,
                                                                             django_assert_num_queries):
    from tests.conftest import recorded

    body = recorded("webhook-annotation_created")["body"]
    body["project"]["id"] = sms_project.ls_project_id
    client.post("/webhook", data=body, content_type="application/json")  # schedules the check
    assert len(queued_checks) == 1
    with django_assert_num_queries(2):  # the project with its policy, then the event
        response = client.post("/webhook", data=body, content_type="application/json")
    assert response.status_code == 201
    assert len(queued_checks) == 1 and schedule.pending_of(sms_project).events == 2


def test_events_that_do_not_train_queue_nothing(sms_project, queued_checks):
    schedule.on_event(webhook_event(sms_project, "PROJECT_UPDATED", ()))
    schedule.on_event(WebhookEvent.objects.create(ls_project_id=99, action="ANNOTATION_CREATED"))
    TrainingPolicy.objects.filter(project=sms_project).update(auto_train=False)
    schedule.on_event(webhook_event(sms_project))
    assert queued_checks == []


def test_a_broker_outage_loses_no_event(sms_project, monkeypatch, jobs_sent):
    def down(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(jobs, "send", down)
    schedule.on_event(webhook_event(sms_project))
    sms_project.refresh_from_db()
    assert sms_project.training_check_at is None  # so the next event or reconciliation asks again
    assert schedule.pending_of(sms_project).events == 1


def test_who_asked_to_train_names_the_run_and_even_if_unchanged_is_a_flag_beside_it(sms_project):
    """The first ask among the pending events names the run (Label Studio's Start Training, the console, the
    API); "even if unchanged" from either of ours is a flag, not a trigger of its own."""
    webhook_event(sms_project)  # an annotation
    webhook_event(sms_project, action="TRAIN_API_FORCED")
    webhook_event(sms_project, action="START_TRAINING")
    found = schedule.pending_of(sms_project)
    assert (found.forced, found.asked_by, found.repeat) == (True, "api", True)
    event = schedule.request_training(sms_project)
    assert event.action == "TRAIN_CONSOLE"
    with pytest.raises(ValueError, match="unknown source"):
        schedule.request_training(sms_project, source="somewhere")
