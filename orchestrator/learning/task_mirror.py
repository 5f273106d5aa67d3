"""The task mirror: every task of a connected project (its id and data), kept in the service's database.

A push scores every unlabeled task. Listing them all from Label Studio cost as much as importing
their predictions (both are CPU work in its one process), so a push reads its tasks from here and
asks Label Studio only what changed since the last push:

- tasks created: those whose id is above the newest mirrored one (Label Studio numbers tasks in
  creation order), one request when there are none;
- tasks deleted: those named by TASKS_DELETED webhooks, checked against Label Studio (webhook
  bodies are unsigned: they only say what to look at);
- anything a lost webhook hid: Label Studio's task count (one request) against the mirror's;
  when they differ, the ids of every task are compared (ids only, the cheap listing).

Task data edited in place after import has no webhook and leaves every count alone: the mirror
reads Label Studio whole at a project's first push, every ALO_TASK_MIRROR_FULL_HOURS, and on demand
(`manage.py sync_tasks --full`). Which tasks are labeled is asked of Label
Studio at each push (ids only), as it changes with every annotation.

Only scoring runs write the mirror, under the project's scoring lease.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestrator.gateways import label_studio, label_studio_tasks
from orchestrator.learning import leases
from orchestrator.learning.models import MirroredTask, Project, TaskMirrorState, WebhookEvent

logger = logging.getLogger(__name__)

# Tasks written per transaction (annotators' saves and webhook acks never wait on a long one).
WRITE_PAGE = 2000


@dataclass
class MirrorReport:
    """What one check of the mirror read and changed."""

    mode: str  # full | changes
    reason: str = ""
    read: int = 0  # tasks read from Label Studio (with their data)
    added: int = 0
    updated: int = 0
    removed: int = 0
    listed_ids: bool = False  # the ids of every task were compared

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync(project: Project, *, full: bool = False) -> MirrorReport:
    """Bring the project's mirror up to Label Studio: whole when due or asked for, else what changed."""
    state, _ = TaskMirrorState.objects.get_or_create(project=project)
    reason = _whole_read_reason(state, full)
    report = _read_whole(project, state, reason) if reason else _read_changes(project, state)
    state.checked_at = timezone.now()
    state.last_check = report.as_dict()
    state.save()
    logger.info("task_mirror_synced project=%s mode=%s reason=%s read=%s added=%s updated=%s removed=%s",
                project.ls_project_id, report.mode, report.reason, report.read, report.added, report.updated,
                report.removed)
    return report


def sync_now(project_pk: int, *, full: bool = False) -> str:
    """`sync` under the project's scoring lease (a push syncs the mirror itself: never both at once)."""
    project = Project.objects.filter(pk=project_pk).first()
    if project is None or not label_studio.is_configured():
        return "nothing to do"
    try:
        with leases.holding(project.pk, kind="scoring") as held:
            if not held:
                return "a push holds the project: it brings the mirror up itself"
            report = sync(project, full=full)
    except label_studio.LabelStudioError as exc:
        logger.warning("task_mirror_sync_failed project=%s error=%s", project.ls_project_id, exc)
        return f"failed: {exc}"
    return f"{report.mode}: read {report.read}, added {report.added}, updated {report.updated}, removed {report.removed}"


def counts(project: Project) -> dict[str, Any]:
    """Tasks in the mirror and when it was last read whole (the console shows them)."""
    state = TaskMirrorState.objects.filter(project=project).first()
    return {"tasks": MirroredTask.objects.filter(project=project).count(),
            "full_read_at": state.full_read_at if state else None,
            "checked_at": state.checked_at if state else None}


# --- what a push reads ----------------------------------------------------------------------------------
def unlabeled_ids(project: Project, *, after_id: int, labeled: np.ndarray) -> np.ndarray:
    """The mirrored tasks above `after_id` that are not in `labeled` (sorted int64), by id."""
    ids = np.fromiter(MirroredTask.objects.filter(project=project, task_id__gt=after_id).order_by("task_id")
                      .values_list("task_id", flat=True).iterator(chunk_size=20000), dtype=np.int64)
    return ids[~np.isin(ids, labeled, assume_unique=True)] if len(labeled) else ids


def tasks_of(project: Project, ids: np.ndarray) -> list[dict[str, Any]]:
    """These mirrored tasks in Label Studio's shape (`id`, `data`), in the order of `ids` (sorted)."""
    if not len(ids):
        return []
    wanted = set(ids.tolist())
    rows = (MirroredTask.objects.filter(project=project, task_id__gte=int(ids[0]), task_id__lte=int(ids[-1]))
            .order_by("task_id").values_list("task_id", "data"))
    return [{"id": task_id, "data": data} for task_id, data in rows.iterator(chunk_size=WRITE_PAGE)
            if task_id in wanted]


def labeled_ids(project: Project) -> np.ndarray:
    """The ids of the project's tasks Label Studio counts as labeled now (sorted int64; ids only)."""
    ls_id = project.ls_project_id
    ids = label_studio.with_retries(lambda: label_studio_tasks.annotated_task_ids(ls_id),
                                    what=f"listing project {ls_id}'s labeled tasks")
    return np.array(sorted(ids), dtype=np.int64)


# --- reading Label Studio -------------------------------------------------------------------------------
def _whole_read_reason(state: TaskMirrorState, full: bool) -> str:
    if full:
        return "asked"
    if state.full_read_at is None:
        return "first read"
    hours = settings.ALO_TASK_MIRROR_FULL_HOURS
    if hours > 0 and timezone.now() - state.full_read_at > timedelta(hours=hours):
        return f"last whole read over {hours:g} h ago"
    return ""


def _read_whole(project: Project, state: TaskMirrorState, reason: str) -> MirrorReport:
    """Every task, page by page (each page its own short transaction), then what Label Studio no longer
    has leaves the mirror."""
    ls_id = project.ls_project_id
    report = MirrorReport(mode="full", reason=reason)
    events_through = _last_event(project)
    seen: set[int] = set()

    def read() -> None:
        seen.clear()
        for page in label_studio_tasks.iter_tasks(ls_id):
            _apply(project, page, report, seen)

    label_studio.with_retries(read, what=f"reading project {ls_id}'s tasks")
    gone = set(MirroredTask.objects.filter(project=project).values_list("task_id", flat=True)) - seen
    report.removed += _remove(project, gone)
    state.full_read_at, state.full_reads = timezone.now(), state.full_reads + 1
    state.events_through = events_through
    return report


def _read_changes(project: Project, state: TaskMirrorState) -> MirrorReport:
    ls_id = project.ls_project_id
    report = MirrorReport(mode="changes")
    events_through = _last_event(project)
    newest = MirroredTask.objects.filter(project=project).order_by("-task_id").values_list("task_id", flat=True).first()

    def created() -> None:
        for page in label_studio_tasks.iter_tasks(ls_id, after_id=newest or 0):
            _apply(project, page, report, set())

    label_studio.with_retries(created, what=f"reading project {ls_id}'s new tasks")
    named = _tasks_named_by_deletions(project, state.events_through, events_through)
    if named:  # what the webhooks say is only what to look at
        still = label_studio.with_retries(lambda: label_studio_tasks.existing_task_ids(ls_id, sorted(named)),
                                          what="checking deleted tasks")
        report.removed += _remove(project, named - still)
    total = label_studio.with_retries(lambda: label_studio_tasks.task_count(ls_id), what="counting tasks")
    if MirroredTask.objects.filter(project=project).count() != total:
        report.reason, report.listed_ids = "task count differs", True
        now_ids = label_studio.with_retries(lambda: label_studio_tasks.task_ids(ls_id), what="listing task ids")
        mirrored = set(MirroredTask.objects.filter(project=project).values_list("task_id", flat=True))
        report.removed += _remove(project, mirrored - now_ids)
        _read_again(project, now_ids - mirrored, report)
    state.events_through = events_through
    return report


def _read_again(project: Project, task_ids: Iterable[int], report: MirrorReport) -> None:
    """Read these tasks by id: mirrored as they are now, or removed when Label Studio no longer has them."""
    wanted = sorted(set(task_ids))
    if not wanted:
        return
    found = label_studio.with_retries(lambda: label_studio_tasks.tasks_with_data(project.ls_project_id, wanted),
                                      what="reading tasks again")
    seen: set[int] = set()
    for start in range(0, len(found), WRITE_PAGE):
        _apply(project, found[start:start + WRITE_PAGE], report, seen)
    report.removed += _remove(project, set(wanted) - seen)


def _tasks_named_by_deletions(project: Project, after_event: int, through_event: int) -> set[int]:
    named: set[int] = set()
    for task_ids in WebhookEvent.objects.filter(project=project, action="TASKS_DELETED", pk__gt=after_event,
                                                pk__lte=through_event).values_list("task_ids", flat=True):
        named.update(int(i) for i in task_ids or ())
    return named


def _last_event(project: Project) -> int:
    return WebhookEvent.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True).first() or 0


# --- writing the mirror ---------------------------------------------------------------------------------
def _apply(project: Project, tasks: list[Mapping[str, Any]], report: MirrorReport, seen: set[int]) -> None:
    """Mirror these tasks as Label Studio gave them (new ones added, changed data replaced)."""
    now = {int(t["id"]): t.get("data") or {} for t in tasks if isinstance(t.get("id"), int)}
    report.read += len(tasks)
    seen.update(now)
    if not now:
        return
    for start in range(0, len(now), WRITE_PAGE):
        _write(project, dict(list(now.items())[start:start + WRITE_PAGE]), report)


def _write(project: Project, now: dict[int, Any], report: MirrorReport) -> None:
    with transaction.atomic():
        have = dict(MirroredTask.objects.filter(project=project, task_id__in=list(now)).values_list("task_id", "data"))
        changed = [task_id for task_id in now if task_id in have and have[task_id] != now[task_id]]
        added = [task_id for task_id in now if task_id not in have]
        if changed:
            MirroredTask.objects.filter(project=project, task_id__in=changed).delete()
        MirroredTask.objects.bulk_create([MirroredTask(project=project, task_id=task_id, data=now[task_id])
                                          for task_id in changed + added], batch_size=500)
    report.added += len(added)
    report.updated += len(changed)


def _remove(project: Project, task_ids: set[int]) -> int:
    removed = 0
    ordered = sorted(task_ids)
    for start in range(0, len(ordered), WRITE_PAGE):
        count, _ = MirroredTask.objects.filter(project=project, task_id__in=ordered[start:start + WRITE_PAGE]).delete()
        removed += count
    return removed

