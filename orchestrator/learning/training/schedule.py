"""When a project's training is looked at: checks asked for by events, coalesced, and the rule that decides.

How a burst is coalesced:
1. The webhook records the event and asks for a check (`on_event` -> `request_check`). A
   project has at most one check scheduled (`Project.training_check_at`); an earlier
   request moves it.
2. The check (a Celery task, `loop.run_check`) adds up the pending events (`pending_of`)
   and applies the project's `TrainingPolicy` (`decide`): train now, look again later, or
   nothing to do.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from orchestrator import jobs
from orchestrator.learning.events import (
    ASKED_BY,
    REPEAT_ACTIONS,
    TRAIN_API,
    TRAIN_API_FORCED,
    TRAIN_CONSOLE,
    TRAIN_FORCED,
    TRAINING_EVENTS,
    TrainingSchedule,
)
from orchestrator.learning.models import Project, TrainingPolicy, WebhookEvent
from orchestrator.sqlite_turns import write_turn

FORCE_ACTIONS = frozenset(ASKED_BY)
# While changes are pending but not yet due, look again at least this often.
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class Pending:
    """What the unprocessed training events of a project add up to."""

    events: int = 0
    changes: int = 0  # annotation ids they name (at least one per event)
    forced: bool = False  # an ask to train among them (Start Training, the legacy /train, the console, the API)
    asked_by: str = ""  # the first ask's trigger (events.ASKED_BY)
    repeat: bool = False  # "even if unchanged" (console or API) among them
    last_at: datetime | None = None
    through_id: int = 0


@dataclass(frozen=True)
class Decision:
    train: bool
    trigger: str = ""
    check_at: datetime | None = None  # not due yet: look again then


def decide(policy: TrainingPolicy, pending: Pending, now: datetime) -> Decision:
    """Train now, look again at `check_at`, or do nothing (pure: no I/O)."""
    if pending.events == 0:
        return Decision(train=False)
    if pending.forced:
        return Decision(train=True, trigger=pending.asked_by)
    if not policy.auto_train:
        return Decision(train=False)
    if policy.retrain_every and pending.changes >= policy.retrain_every:
        return Decision(train=True, trigger="annotations")
    if policy.quiet_seconds > 0 and pending.last_at is not None:
        quiet_at = pending.last_at + timedelta(seconds=policy.quiet_seconds)
        if now >= quiet_at:
            return Decision(train=True, trigger="quiet")
        return Decision(train=False, check_at=min(quiet_at, now + timedelta(seconds=POLL_SECONDS)))
    if policy.retrain_every:  # counting towards N: look again as events come
        return Decision(train=False, check_at=now + timedelta(seconds=POLL_SECONDS))
    return Decision(train=False)


def pending_of(project: Project, through_id: int | None = None) -> Pending:
    rows = WebhookEvent.objects.filter(project=project, processed_at=None, action__in=TRAINING_EVENTS)
    if through_id is not None:
        rows = rows.filter(pk__lte=through_id)
    count = changes = 0
    forced = repeat = False
    asked_by = ""
    last_at, last_id = None, 0
    for pk, action, ids, received_at in rows.order_by("pk").values_list("pk", "action", "annotation_ids",
                                                                        "received_at").iterator():
        count += 1
        changes += max(1, len(ids or ()))
        if action in FORCE_ACTIONS and not forced:
            forced, asked_by = True, ASKED_BY[action]
        repeat = repeat or action in REPEAT_ACTIONS
        last_at = received_at if last_at is None or received_at > last_at else last_at
        last_id = max(last_id, pk)
    return Pending(events=count, changes=changes, forced=forced, asked_by=asked_by, repeat=repeat, last_at=last_at,
                   through_id=last_id)


_UNKNOWN: Any = object()


def request_check(project_pk: int, *, delay: float = 0.0, scheduled: datetime | None = _UNKNOWN) -> bool:
    """Ask for a training check of a project in `delay` seconds, unless one comes sooner.

    `scheduled`: the project's `training_check_at` if the caller just read it.
    Returns whether a check was asked for (False: one comes sooner, or the broker refused
    it). A broker failure is logged, not raised: the events stay pending and the next event
    or beat's reconciliation asks again.
    """
    at = timezone.now() + timedelta(seconds=max(0.0, delay))
    # Most events of a burst find a check already scheduled: a read settles it without a write.
    if scheduled is _UNKNOWN:
        scheduled = Project.objects.filter(pk=project_pk).values_list("training_check_at", flat=True).first()
    if scheduled is not None and scheduled <= at:
        return False
    sooner = Q(training_check_at__isnull=True) | Q(training_check_at__gt=at)
    with write_turn():  # a webhook's write: in turn with the other acks on SQLite
        if not Project.objects.filter(pk=project_pk).filter(sooner).update(training_check_at=at):
            return False
    # Not sent: unschedule it, so the next event or beat's reconciliation asks again.
    return jobs.enqueue(jobs.CHECK_TRAINING, project_pk, countdown=delay, on_failure=lambda: Project.objects.filter(
        pk=project_pk, training_check_at=at).update(training_check_at=None))


def on_event(event: WebhookEvent, known: TrainingSchedule | None = None) -> None:
    """Called by /webhook and /train after recording an event: schedule a check if it matters.

    `known`: the project's schedule as the ack just read it (saves a read per event).
    """
    if event.project_id is None or event.action not in TRAINING_EVENTS:
        return
    if event.action in FORCE_ACTIONS:
        request_check(event.project_id)
        return
    if known is not None and known.project_pk == event.project_id:
        auto_train, quiet, scheduled = known.auto_train, known.quiet_seconds, known.check_at
    else:
        policy = TrainingPolicy.objects.filter(project_id=event.project_id).only(
            "auto_train", "quiet_seconds").first() or TrainingPolicy()
        auto_train, quiet, scheduled = policy.auto_train, policy.quiet_seconds, _UNKNOWN
    if auto_train:
        # Soon enough to count towards retrain_every, late enough to coalesce a burst.
        delay = min(POLL_SECONDS, quiet) if quiet > 0 else POLL_SECONDS
        request_check(event.project_id, delay=delay, scheduled=scheduled)


def request_training(project: Project, *, even_if_unchanged: bool = False, source: str = "console") -> WebhookEvent:
    """Train now, from the console or the API (`source`: the run's trigger): recorded as an event, so it
    coalesces with the annotation events pending and trains even with automatic training off. On the
    annotations the latest version learned it trains only `even_if_unchanged`."""
    if source not in ("console", "api"):
        raise ValueError(f"unknown source {source!r}: console or api")
    action = {("console", False): TRAIN_CONSOLE, ("console", True): TRAIN_FORCED, ("api", False): TRAIN_API,
              ("api", True): TRAIN_API_FORCED}[source, even_if_unchanged]
    event = WebhookEvent.objects.create(project=project, ls_project_id=project.ls_project_id, action=action)
    on_event(event)
    return event
