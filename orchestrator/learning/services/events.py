"""Record what Label Studio tells the service through /webhook and the legacy /train."""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.db import connection

from orchestrator.learning.models import Project, WebhookEvent
from orchestrator.learning.services.projects import parse_project_key

# Events that change what a model should learn; the training loop acts on these.
# RECONCILE is the service's own: annotations changed in Label Studio without a webhook.
TRAINING_EVENTS = frozenset(
    {"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING",
     "TRAIN", "RECONCILE"}
)


class _SqliteInsertTurns:
    """A webhook's writes (its event, the check it schedules) take turns on a lock instead of
    in SQLite's busy handler.

    SQLite admits one writer at a time, and a writer that finds the file locked sleeps in
    its busy handler (1, 2, 5, 10, 15, 20, 25, ... 100 ms between tries) with no queue: under
    a burst a waiter can lose again and again (measured: single acks of 236 ms while the
    median was 10). Threads of one process queue on a threading lock; web processes queue
    on an flock of a file beside the database, which the kernel hands over the moment it is
    released. The worker's rare writes still meet the busy handler.
    """

    def __init__(self) -> None:
        self._threads = threading.Lock()
        self._file = None
        self._pid = 0

    def _lock_file(self):
        """This process's handle on the lock file (flock is per open file), or None for a
        database that is not a file (an in-memory test database has one process)."""
        if self._pid != os.getpid():
            name = str(connection.settings_dict["NAME"])
            path = Path(f"{name}.insert-lock")
            usable = not name.startswith(("file:", ":memory:")) and path.parent.is_dir()
            self._file = open(path, "a+b") if usable else None  # noqa: SIM115 - held for the process
            self._pid = os.getpid()
        return self._file

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._lock_file() is not None:
                fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._file is not None:  # the one __enter__ locked: it changes only under the thread lock
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()


_SQLITE_INSERTS = _SqliteInsertTurns()


def write_turn():
    """The turn a web request takes for its few writes on SQLite (nothing to take elsewhere)."""
    return _SQLITE_INSERTS if connection.vendor == "sqlite" else contextlib.nullcontext()


class EventError(ValueError):
    """A webhook body the service cannot read."""


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


def _project_id(payload: Mapping[str, Any]) -> int | None:
    project = payload.get("project")
    if isinstance(project, Mapping):
        project = project.get("id")
    if project is None:
        return None
    try:
        return parse_project_key(project)
    except ValueError as exc:
        raise EventError(str(exc)) from exc


def record_event(payload: Any) -> WebhookEvent:
    """Store one event compactly (ids, not payloads: a project object is kilobytes)."""
    if not isinstance(payload, Mapping):
        raise EventError("the webhook body must be a JSON object")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise EventError('the webhook body has no "action" (e.g. "ANNOTATION_CREATED")')
    ls_project_id = _project_id(payload)
    annotation = payload.get("annotation")
    cancelled = bool(isinstance(annotation, Mapping) and annotation.get("was_cancelled"))
    annotation_ids = _ids(payload.get("annotation")) + _ids(payload.get("annotations"))
    task_ids = _ids(payload.get("task")) + _ids(payload.get("tasks"))
    # One read gives the training loop all it needs to schedule (see training_loop.on_event):
    # an ack is a read and an insert, which keeps it fast when annotators save in bursts.
    snapshot = None
    if ls_project_id:
        snapshot = Project.objects.filter(ls_project_id=ls_project_id).values(
            "pk", "training_check_at", "training_policy__auto_train", "training_policy__quiet_seconds").first()
    event = WebhookEvent(
        project_id=snapshot["pk"] if snapshot else None,
        ls_project_id=ls_project_id,
        action=action[:64],
        annotation_ids=annotation_ids,
        task_ids=task_ids,
        cancelled=cancelled,
    )
    with write_turn():
        event.save(force_insert=True)
    event.project_snapshot = snapshot  # not a column: the project's scheduling state as of this event
    return event


def record_legacy_train(payload: Any) -> WebhookEvent:
    """The legacy POST /train (older Label Studio): every annotated task in `annotations`."""
    if not isinstance(payload, Mapping):
        raise EventError("the /train body must be a JSON object")
    if "project" not in payload:
        raise EventError('the /train body has no "project"')
    tasks = payload.get("annotations")
    return record_event({"action": "TRAIN", "project": payload["project"], "tasks": tasks if isinstance(tasks, list) else []})
