"""Record what Label Studio tells the service through /webhook and the legacy /train."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from orchestrator.learning.models import Project, TrainingPolicy, WebhookEvent
from orchestrator.learning.project_keys import parse_project_key
from orchestrator.sqlite_turns import write_turn

# The service's own events: annotations changed in Label Studio without a webhook (RECONCILE),
# train now from the console or the API, each also "even if unchanged" (the *_FORCED ones).
# A webhook never records these.
RECONCILE = "RECONCILE"
TRAIN_CONSOLE, TRAIN_FORCED = "TRAIN_CONSOLE", "TRAIN_FORCED"
TRAIN_API, TRAIN_API_FORCED = "TRAIN_API", "TRAIN_API_FORCED"
# Who asked for a training, by the event that asks (the run's trigger); and which ask for it even on
# the annotations the latest version learned.
ASKED_BY = {"START_TRAINING": "start_training", "TRAIN": "start_training", TRAIN_CONSOLE: "console",
            TRAIN_FORCED: "console", TRAIN_API: "api", TRAIN_API_FORCED: "api"}
REPEAT_ACTIONS = frozenset({TRAIN_FORCED, TRAIN_API_FORCED})
# Events that change what a model should learn; the training loop acts on these.
TRAINING_EVENTS = frozenset(
    {"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", RECONCILE, *ASKED_BY}
)
OWN_ACTIONS = frozenset({RECONCILE, TRAIN_CONSOLE, TRAIN_FORCED, TRAIN_API, TRAIN_API_FORCED})


class EventError(ValueError):
    """A webhook body the service cannot read."""


@dataclass(frozen=True)
class TrainingSchedule:
    """A project's training schedule as the ack read it: what the loop needs to ask for a check."""

    project_pk: int
    check_at: datetime | None  # Project.training_check_at
    auto_train: bool
    quiet_seconds: float


class Recorded(NamedTuple):
    event: WebhookEvent
    schedule: TrainingSchedule | None  # None: the event names no project the service knows


def _ids(items: Any) -> list[int]:
    if isinstance(items, Mapping):
        items = [items]
    if not isinstance(items, list):
        return []
    out: list[int] = []
    for item in items:
        value = item.get("id") if isinstance(item, Mapping) else item
        if isinstance(value, int) and not isinstance(value, bool):
            out.append(value)
    return out


def _ls_project_id(payload: Mapping[str, Any]) -> int | None:
    project = payload.get("project")
    if isinstance(project, Mapping):
        project = project.get("id")
    if project is None:
        return None
    try:
        return parse_project_key(project)
    except ValueError as exc:
        raise EventError(str(exc)) from exc


def record_event(payload: Any) -> Recorded:
    """Store one event compactly (ids, not payloads: a project object is kilobytes)."""
    if not isinstance(payload, Mapping):
        raise EventError("the webhook body must be a JSON object")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise EventError('the webhook body has no "action" (e.g. "ANNOTATION_CREATED")')
    if action in OWN_ACTIONS:
        raise EventError(f'"action" {action!r} is the service\'s own; Label Studio never sends it')
    ls_project_id = _ls_project_id(payload)
    annotation = payload.get("annotation")
    cancelled = bool(isinstance(annotation, Mapping) and annotation.get("was_cancelled"))
    annotation_ids = _ids(payload.get("annotation")) + _ids(payload.get("annotations"))
    task_ids = _ids(payload.get("task")) + _ids(payload.get("tasks"))
    # One read gives the training loop all it needs to schedule (see training/schedule.py, on_event):
    # an ack is a read and an insert, which keeps it fast when annotators save in bursts.
    schedule = _training_schedule(ls_project_id) if ls_project_id else None
    event = WebhookEvent(
        project_id=schedule.project_pk if schedule else None,
        ls_project_id=ls_project_id,
        action=action[:64],
        annotation_ids=annotation_ids,
        task_ids=task_ids,
        cancelled=cancelled,
    )
    with write_turn():
        event.save(force_insert=True)
    return Recorded(event, schedule)


def _training_schedule(ls_project_id: int) -> TrainingSchedule | None:
    row = Project.objects.filter(ls_project_id=ls_project_id).values(
        "pk", "training_check_at", "training_policy__auto_train", "training_policy__quiet_seconds").first()
    if row is None:
        return None
    defaults = TrainingPolicy()  # a project without a policy row trains by the defaults
    auto_train, quiet = row["training_policy__auto_train"], row["training_policy__quiet_seconds"]
    return TrainingSchedule(
        project_pk=row["pk"], check_at=row["training_check_at"],
        auto_train=defaults.auto_train if auto_train is None else auto_train,
        quiet_seconds=defaults.quiet_seconds if quiet is None else quiet)


def record_legacy_train(payload: Any) -> Recorded:
    """The legacy POST /train (older Label Studio): every annotated task in `annotations`."""
    if not isinstance(payload, Mapping):
        raise EventError("the /train body must be a JSON object")
    if "project" not in payload:
        raise EventError('the /train body has no "project"')
    tasks = payload.get("annotations")
    return record_event({"action": "TRAIN", "project": payload["project"],
                         "tasks": tasks if isinstance(tasks, list) else []})
