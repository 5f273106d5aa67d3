"""The annotation store: every annotated task's data and annotations, kept in the service's database.

A training reads its own database instead of every annotated task from Label Studio. The store
follows Label Studio, which stays the source: the first use reads the project whole (also on
demand); after that each check reads only what changed: the annotated tasks Label Studio updated
since the newest change seen (an annotation saved, edited or deleted bumps its task's
`updated_at`; listed by id and stamp first, and read whole only when the stamp differs from the
stored one), the tasks named by deletion webhooks (a task left without annotations leaves the
store), and, when Label Studio's annotation count differs from the store's (a lost webhook, a task
deleted), the ids of every annotated task. Webhook bodies are never taken as data: unsigned, anyone
could send them; they only say which tasks to read again.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestrator import jobs
from orchestrator.gateways import label_studio, label_studio_tasks
from orchestrator.learning import leases
from orchestrator.learning.models import AnnotationStoreState, Project, StoredAnnotation, StoredTask, WebhookEvent

logger = logging.getLogger(__name__)

# A check asks again for tasks updated this long before the newest change it saw, while that change
# is recent (twice this long, on the service's clock): transactions in Label Studio commit out of
# the order of their timestamps. Once it settled, only what is newer is asked for (a big import
# would otherwise be read again at every check).
SEEN_MARGIN_SECONDS = 30
# Label Studio's Data Manager reads a Datetime filter in exactly this form (UTC).
LS_DATETIME = "%Y-%m-%dT%H:%M:%S.%fZ"
DELETIONS = ("ANNOTATIONS_DELETED", "TASKS_DELETED")


@dataclass
class SyncReport:
    """What one check of the store read and changed."""

    mode: str  # full | changes
    reason: str = ""
    read: int = 0  # tasks read from Label Studio (with their data and annotations)
    listed: int = 0  # tasks whose id and updated_at a check listed (the cheap comparison)
    stored: int = 0  # tasks written (new or changed)
    removed: int = 0  # tasks that left the store
    listed_ids: bool = False  # the ids of every annotated task were compared

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sync(project: Project, *, full: bool = False, reason: str = "") -> SyncReport:
    """Bring the project's store up to Label Studio: whole on first use or when `full`, else what changed."""
    state, _ = AnnotationStoreState.objects.get_or_create(project=project)
    if full or state.full_read_at is None:
        report = _read_whole(project, state, reason or ("asked" if full else "first read"))
    else:
        report = _read_changes(project, state)
    state.checked_at = timezone.now()
    state.last_check = report.as_dict()
    state.save()
    logger.info("annotation_store_synced project=%s mode=%s reason=%s read=%s stored=%s removed=%s",
                project.ls_project_id, report.mode, report.reason, report.read, report.stored, report.removed)
    return report


def request_sync(project_pk: int, *, full: bool = False) -> None:
    """Ask a training worker to bring the store up to Label Studio (a project just connected: read it whole
    now, so its first training reads only what changed since)."""
    if label_studio.is_configured():
        jobs.enqueue(jobs.SYNC_ANNOTATIONS, project_pk, int(full))


def sync_now(project_pk: int, *, full: bool = False) -> str:
    """`sync` under the project's training lease (a training syncs the store itself: never both at once)."""
    project = Project.objects.filter(pk=project_pk).first()
    if project is None or not label_studio.is_configured():
        return "nothing to do"
    try:
        with leases.holding(project.pk, kind="training") as held:
            if not held:
                return "a training holds the project: it reads the store itself"
            report = sync(project, full=full, reason="asked" if full else "")
    except label_studio.LabelStudioError as exc:
        logger.warning("annotation_store_sync_failed project=%s error=%s", project.ls_project_id, exc)
        return f"failed: {exc}"
    return f"{report.mode}: read {report.read}, stored {report.stored}, removed {report.removed}"


def stored_tasks(project: Project) -> Iterable[dict[str, Any]]:
    """The store's tasks in Label Studio's shape (`id`, `data`, `annotations`), by task id.

    Tasks and annotations are read side by side, both by task id, a page of each at a time: a
    training never holds every annotation's body at once."""
    annotations = (StoredAnnotation.objects.filter(project=project).order_by("task_id", "annotation_id")
                   .values_list("task_id", "body").iterator(chunk_size=2000))
    pending = next(annotations, None)
    for task_id, data in (StoredTask.objects.filter(project=project).order_by("task_id")
                          .values_list("task_id", "data").iterator(chunk_size=2000)):
        bodies: list[dict[str, Any]] = []
        while pending is not None and pending[0] <= task_id:
            if pending[0] == task_id:
                bodies.append(pending[1])
            pending = next(annotations, None)
        yield {"id": task_id, "data": data, "annotations": bodies}


def counts(project: Project) -> dict[str, int]:
    """Tasks, annotations and skips in the store (the console shows them)."""
    stored = StoredAnnotation.objects.filter(project=project)
    return {"tasks": StoredTask.objects.filter(project=project).count(), "annotations": stored.count(),
            "skipped": stored.filter(was_cancelled=True).count()}


# --- reading Label Studio ---------------------------------------------------------------------------
def _read_whole(project: Project, state: AnnotationStoreState, reason: str) -> SyncReport:
    """Every annotated task, page by page (each page its own short transaction: annotators' saves and
    webhook acks never wait on a long one), then what Label Studio no longer has leaves the store."""
    ls_id = project.ls_project_id
    report = SyncReport(mode="full", reason=reason)
    events_through = _last_event(project)
    # Label Studio's clock as the read begins: whatever changes from now on is stamped after it.
    begun = _normal_time(label_studio.with_retries(lambda: label_studio_tasks.newest_update(ls_id),
                                                   what="reading Label Studio's clock"))
    seen: set[int] = set()

    def read() -> None:
        seen.clear()
        _apply_pages(project, label_studio_tasks.iter_annotated_tasks(ls_id, page_size=settings.LABEL_STUDIO_PAGE_SIZE),
                     report, seen)

    label_studio.with_retries(read, what=f"reading project {ls_id}'s annotations")
    gone = set(StoredTask.objects.filter(project=project).values_list("task_id", flat=True)) - seen
    report.removed += _remove(project, gone)
    state.full_read_at = timezone.now()
    state.full_reads += 1
    # Changes that landed while the pages were read are asked for again by the next check ("": it asks for all).
    state.seen_through, state.seen_at = begun, timezone.now()
    state.events_through = events_through
    return report


def _read_changes(project: Project, state: AnnotationStoreState) -> SyncReport:
    ls_id = project.ls_project_id
    report = SyncReport(mode="changes")
    events_through = _last_event(project)
    since = None
    if state.seen_through:
        settled = state.seen_at is not None and timezone.now() - state.seen_at > timedelta(seconds=2 * SEEN_MARGIN_SECONDS)
        since = _ls_time(_parse(state.seen_through) - timedelta(seconds=0 if settled else SEEN_MARGIN_SECONDS))
    newest = state.seen_through

    def changed() -> str:
        """The annotated tasks updated since then, listed by id and stamp; only those whose stamp differs
        from the one stored (or that the store lacks) are read whole."""
        stamps = label_studio_tasks.annotated_stamps(ls_id, updated_since=since)
        report.listed += len(stamps)
        stored: dict[int, str] = {}
        ids = sorted(stamps)
        for start in range(0, len(ids), 2000):
            stored.update(StoredTask.objects.filter(project=project, task_id__in=ids[start:start + 2000])
                          .values_list("task_id", "ls_updated_at"))
        differing = [i for i in ids if not stamps[i] or stored.get(i) != _normal_time(stamps[i])]
        _read_again(project, differing, report)
        return max((_normal_time(stamp) for stamp in stamps.values()), default="")

    newest = max(newest, label_studio.with_retries(changed, what=f"reading project {ls_id}'s changed annotations"))
    named = _tasks_named_by_deletions(project, state.events_through, events_through)
    if named:
        _read_again(project, named, report)
    total, skipped = label_studio.with_retries(lambda: label_studio_tasks.annotation_counts(ls_id),
                                               what="counting annotations")
    live = total - skipped
    if StoredAnnotation.objects.filter(project=project, was_cancelled=False).count() != live:
        report.reason = "annotation count differs"
        report.listed_ids = True
        now_ids = label_studio.with_retries(lambda: label_studio_tasks.annotated_task_ids(ls_id),
                                            what="listing annotated tasks")
        stored_ids = set(StoredTask.objects.filter(project=project).values_list("task_id", flat=True))
        _read_again(project, (stored_ids - now_ids) | (now_ids - stored_ids), report)
        if StoredAnnotation.objects.filter(project=project, was_cancelled=False).count() != live:
            # Still apart (edits that raced this check): read whole.
            return _read_whole(project, state, "annotation count still differs after the id check")
    if newest != state.seen_through:
        state.seen_through, state.seen_at = newest, timezone.now()
    state.events_through = events_through
    return report


def _read_again(project: Project, task_ids: Iterable[int], report: SyncReport) -> None:
    """Read these tasks by id: stored again as they are now, or removed when they have no annotation left."""
    wanted = sorted(set(task_ids))
    page = settings.LABEL_STUDIO_PAGE_SIZE
    for start in range(0, len(wanted), page):  # a page at a time: never every task in memory, short transactions
        chunk = wanted[start:start + page]
        found = label_studio.with_retries(lambda: label_studio_tasks.tasks_by_id(project.ls_project_id, chunk),
                                          what="reading tasks again")
        seen: set[int] = set()
        _apply(project, found, report, seen)
        report.removed += _remove(project, set(chunk) - seen)  # tasks Label Studio no longer has


def _tasks_named_by_deletions(project: Project, after_event: int, through_event: int) -> set[int]:
    """Tasks that deletion webhooks since the last check touched (annotation ids mapped through the store)."""
    annotation_ids: set[int] = set()
    task_ids: set[int] = set()
    for annotations, tasks in WebhookEvent.objects.filter(
            project=project, action__in=DELETIONS, pk__gt=after_event, pk__lte=through_event).values_list(
            "annotation_ids", "task_ids"):
        annotation_ids.update(int(i) for i in annotations or ())
        task_ids.update(int(i) for i in tasks or ())
    if annotation_ids:
        task_ids.update(StoredAnnotation.objects.filter(project=project, annotation_id__in=annotation_ids)
                        .values_list("task_id", flat=True))
    return task_ids


def _last_event(project: Project) -> int:
    return WebhookEvent.objects.filter(project=project).order_by("-pk").values_list("pk", flat=True).first() or 0


# --- writing the store --------------------------------------------------------------------------------
def _apply_pages(project: Project, tasks: Iterable[Mapping[str, Any]], report: SyncReport, seen: set[int]) -> str:
    """`_apply` a page at a time (each page its own short transaction; never every task in memory);
    returns the newest `updated_at` seen."""
    newest, page = "", []
    for task in tasks:
        page.append(task)
        if len(page) >= settings.LABEL_STUDIO_PAGE_SIZE:
            newest = max(newest, _apply(project, page, report, seen))
            page = []
    if page:
        newest = max(newest, _apply(project, page, report, seen))
    return newest


def _apply(project: Project, tasks: list[Mapping[str, Any]], report: SyncReport, seen: set[int]) -> str:
    """Store these tasks as Label Studio gave them (a task without a live annotation is removed);
    returns the newest `updated_at` among them (in LS_DATETIME). `seen` gets the ids of the tasks kept."""
    newest = ""
    keep: dict[int, tuple[str, Any, list[dict[str, Any]]]] = {}
    for task in tasks:
        report.read += 1
        updated = _normal_time(task.get("updated_at"))
        newest = max(newest, updated)
        annotations = [_annotation_body(a) for a in task.get("annotations") or () if isinstance(a, Mapping)
                       and isinstance(a.get("id"), int)]
        if any(not a.get("was_cancelled") for a in annotations):
            annotations.sort(key=lambda a: a["id"])
            keep[int(task["id"])] = (updated, task.get("data") or {}, annotations)
    seen.update(keep)
    dropped = {int(t["id"]) for t in tasks} - set(keep)
    with transaction.atomic():
        if dropped:
            report.removed += _remove(project, dropped)
        if not keep:
            return newest
        have: dict[int, list[Any]] = {task_id: [updated, data, []] for task_id, updated, data in
                                      StoredTask.objects.filter(project=project, task_id__in=list(keep))
                                      .values_list("task_id", "ls_updated_at", "data")}
        for task_id, body in (StoredAnnotation.objects.filter(project=project, task_id__in=list(have))
                              .order_by("annotation_id").values_list("task_id", "body")):
            have[task_id][2].append(body)
        changed = [task_id for task_id, now in keep.items() if tuple(have.get(task_id, ())) != now]
        if not changed:
            return newest
        StoredAnnotation.objects.filter(project=project, task_id__in=changed).delete()
        StoredTask.objects.filter(project=project, task_id__in=changed).delete()
        StoredTask.objects.bulk_create([
            StoredTask(project=project, task_id=task_id, data=keep[task_id][1], ls_updated_at=keep[task_id][0])
            for task_id in changed])
        StoredAnnotation.objects.bulk_create([
            StoredAnnotation(project=project, annotation_id=a["id"], task_id=task_id,
                             was_cancelled=bool(a.get("was_cancelled")), body=a)
            for task_id in changed for a in keep[task_id][2]])
        report.stored += len(changed)
    return newest


def _annotation_body(annotation: Mapping[str, Any]) -> dict[str, Any]:
    """An annotation as Label Studio serves it, less the prediction snapshot it may carry (kilobytes, never read)."""
    return {k: v for k, v in annotation.items() if k not in ("prediction",)}


def _remove(project: Project, task_ids: set[int]) -> int:
    if not task_ids:
        return 0
    with transaction.atomic():
        StoredAnnotation.objects.filter(project=project, task_id__in=task_ids).delete()
        removed, _ = StoredTask.objects.filter(project=project, task_id__in=task_ids).delete()
    return removed


def _ls_time(moment: datetime) -> str:
    return moment.astimezone(dt_timezone.utc).strftime(LS_DATETIME)


def _normal_time(value: Any) -> str:
    """Label Studio's `updated_at` (ISO 8601, with or without fractions) in LS_DATETIME, which sorts as text."""
    if not value:
        return ""
    try:
        return _ls_time(_parse(str(value)))
    except ValueError:
        return ""


def _parse(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt_timezone.utc)
