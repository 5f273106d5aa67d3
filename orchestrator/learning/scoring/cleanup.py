"""The service's older prediction tags deleted once a newer one orders the queue.

After the switch they no longer count for the sort, so this runs as a job of its own,
never holding up a push. Predictions of other models or people are never touched.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning import projects
from orchestrator.learning.models import ModelVersion, PredictionCleanup, Project, ScoringPool, ScoringRun
from orchestrator.learning.scoring.context import ACTIVE

logger = logging.getLogger(__name__)

# Deleting old tags: tasks read per page, deletions in flight at once, how long one job
# deletes before it hands over to a fresh one (so a worker is never held for hours), and
# how often a deletion that waits for a push or failed is looked at again.
CLEANUP_PAGE = 500
CLEANUP_THREADS = settings.ALO_CLEANUP_THREADS
CLEANUP_BUDGET_SECONDS = 30.0
CLEANUP_RECHECK_SECONDS = 60.0
CLEANUP_CHECKS = 30


# Label Studio's Retrieve predictions answered while a push ran (or this soon after one): a clean-up is
# asked for this long after the answer (Label Studio stores it once it has it) to remove the second
# prediction of the tag a task may now hold.
RETRIEVE_NEAR_PUSH_SECONDS = 600.0
RETRIEVE_SETTLE_SECONDS = 30.0
# A clean-up whose last slice ended longer ago than this (and that did not end) is asked for again.
CLEANUP_STALLED_SECONDS = 300.0
# The clock a slice's time is read on (a test drives its own).
_clock = time.monotonic


def request_cleanup(project_pk: int, *, countdown: float = 0.0) -> None:
    """Ask for a clean-up of the project's older tags (after a push), from its first task. Where it stands
    is recorded, so a lost message or a restart resumes it; a slice of a clean-up asked for before
    this one stops (this one covers its tags too)."""
    now = timezone.now()
    with transaction.atomic():
        row, _ = PredictionCleanup.objects.select_for_update().get_or_create(project_id=project_pk)
        row.generation += 1
        row.after_task, row.attempt, row.deleted = 0, 0, 0
        row.requested_at = row.moved_at = now
        row.finished_at = None
        row.save()
    jobs.enqueue(jobs.CLEAN_UP_PREDICTIONS, project_pk, 0, 0, row.generation, countdown=countdown)


def after_retrieve(project_pk: int) -> bool:
    """A /predict of several tasks (Label Studio's Retrieve predictions) near a push: a task the push had not
    reached yet when Label Studio skipped those with a prediction of the tag gets the push's one too. The
    clean-up removes all but one per task; asked for here, after the push's own. Whether it was asked."""
    near = timezone.now() - timedelta(seconds=RETRIEVE_NEAR_PUSH_SECONDS)
    if not ScoringRun.objects.filter(project_id=project_pk).filter(
            Q(status__in=ACTIVE) | Q(finished_at__gte=near)).exists():
        return False
    # Generation 0: whichever clean-up is the latest when it runs. (A numbered one would be replaced by the
    # push's own, asked for when the push ends, which may run before Label Studio stored the Retrieve's.)
    jobs.enqueue(jobs.CLEAN_UP_PREDICTIONS, project_pk, 0, 0, 0, countdown=RETRIEVE_SETTLE_SECONDS)
    return True


def _hand_over(project_pk: int, generation: int, *, countdown: float = 0.0, attempt: int, after_id: int) -> bool:
    """Ask for the next slice of clean-up `generation`, unless a newer one replaced it."""
    now = timezone.now()
    moved = PredictionCleanup.objects.filter(project_id=project_pk, generation=generation).update(
        after_task=after_id, attempt=attempt, requested_at=now, moved_at=now, finished_at=None)
    if moved:
        jobs.enqueue(jobs.CLEAN_UP_PREDICTIONS, project_pk, attempt, after_id, generation, countdown=countdown)
    return bool(moved)


def resume_stalled() -> int:
    """Beat's pass: clean-ups that stopped moving (a lost message, a worker killed or restarted) asked for
    again from where they stopped. Returns how many."""
    stalled_before = timezone.now() - timedelta(seconds=CLEANUP_STALLED_SECONDS)
    resumed = 0
    for row in PredictionCleanup.objects.filter(finished_at=None, moved_at__lt=stalled_before):
        logger.info("scoring_cleanup_resumed project_pk=%s after_task=%s", row.project_id, row.after_task)
        resumed += _hand_over(row.project_id, row.generation, attempt=row.attempt, after_id=row.after_task)
    return resumed


def _record(project_pk: int, generation: int, *, after_task: int, deleted: int, finished: bool) -> bool:
    """Where clean-up `generation` stands; False if a newer one replaced it."""
    now = timezone.now()
    return bool(PredictionCleanup.objects.filter(project_id=project_pk, generation=generation).update(
        after_task=after_task, moved_at=now, finished_at=now if finished else None, deleted=F("deleted") + deleted))


def clean_up(project_pk: int, attempt: int = 0, after_id: int = 0, generation: int = 0) -> str:
    """Delete the service's older tags once a push has switched the project to a newer one.

    Prediction by prediction, each a short transaction in Label Studio: its one-request
    deletion of a model_version holds one transaction for the whole version (~125 a second),
    and on SQLite every annotator's submit meanwhile fails with "database is locked". Tasks
    are walked by id from `after_id`; a job that has used its time budget hands the rest
    to a new job that starts where it stopped. `generation` says which clean-up this slice is of
    (0: a message from before it was recorded, taken as the latest's).
    """
    project = Project.objects.filter(pk=project_pk).first()
    if project is None or not label_studio.is_configured():
        PredictionCleanup.objects.filter(project_id=project_pk).update(finished_at=timezone.now())
        return "nothing to do"
    if not generation:  # a message sent before the state was recorded
        row, _ = PredictionCleanup.objects.get_or_create(project_id=project_pk, defaults={
            "generation": 1, "after_task": after_id, "attempt": attempt, "moved_at": timezone.now()})
        generation = row.generation
    elif not PredictionCleanup.objects.filter(project_id=project_pk, generation=generation).exists():
        return "replaced by a newer clean-up"
    ls_id = project.ls_project_id
    if ScoringRun.objects.filter(project=project, status__in=ACTIVE).exists():
        # A push is running: deletions would compete with its imports. Look again later.
        if attempt < CLEANUP_CHECKS:
            _hand_over(project_pk, generation, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1,
                       after_id=after_id)
        return "after the running push"
    try:
        stale, serving_tag = _stale_tags(project)
        deleted, cursor = delete_tags(ls_id, stale, after_id=after_id, duplicates_of=serving_tag)
        if not stale and not deleted and cursor is None:
            _record(project_pk, generation, after_task=after_id, deleted=0, finished=True)
            return "clean"
        current = _record(project_pk, generation, after_task=after_id if cursor is None else cursor, deleted=deleted,
                          finished=cursor is None)
        if cursor is not None:
            logger.info("scoring_old_tags_deleting project=%s tags=%s deleted=%s after_task=%s", ls_id,
                        sorted(stale), deleted, cursor)
            if not current:  # a newer clean-up, from the first task, covers these tags too
                return f"deleted {deleted} of {sorted(stale)}; a newer clean-up goes on"
            _hand_over(project_pk, generation, attempt=attempt, after_id=cursor)
            return f"deleting {sorted(stale)} after task {cursor}"
    except label_studio.LabelStudioError as exc:
        logger.warning("scoring_cleanup_failed project=%s after_task=%s error=%s", ls_id, after_id, exc)
        if attempt < CLEANUP_CHECKS:
            _hand_over(project_pk, generation, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1,
                       after_id=after_id)
        return f"failed: {exc}"
    logger.info("scoring_old_tags_deleted project=%s tags=%s deleted=%s", ls_id, sorted(stale), deleted)
    return f"deleted {sorted(stale)}" if stale else f"deleted {deleted} second predictions of {serving_tag}"


def _stale_tags(project: Project) -> tuple[set[str], str | None]:
    """The service's tags with predictions in Label Studio that neither order the queue nor are being pushed;
    and the tag that orders the queue when it is the service's (None otherwise)."""
    ls_id = project.ls_project_id
    present = label_studio.model_versions(ls_id)
    in_label_studio = label_studio.get_project(ls_id)
    projects.remember_title(project, in_label_studio.get("title"))
    keep = {in_label_studio.get("model_version")}
    keep |= set(ScoringRun.objects.filter(project=project, status__in=ACTIVE).values_list("tag", flat=True))
    ours = own_tags(project)
    current = in_label_studio.get("model_version")
    return {tag for tag in present if tag in ours and tag not in keep}, (current if current in ours else None)


def delete_tags(ls_id: int, tags: set[str], *, after_id: int = 0,
                duplicates_of: str | None = None) -> tuple[int, int | None]:
    """Delete the predictions of `tags` on the tasks above `after_id`, for CLEANUP_BUDGET_SECONDS at most;
    with `duplicates_of` (the tag that orders the queue), also all but the newest of a task's predictions of
    it (Label Studio's Retrieve predictions during a push stores /predict's answer beside the push's).
    Without `tags`, only tasks with two predictions or more are read.

    The time is read before every deletion, so a slice ends within one request of its budget
    (Label Studio may take a second a deletion while annotators save). Returns how many went,
    and the task to go on after when the time ran out (None: all done). A page cut short is
    listed again by the next slice: what went is no longer listed.
    """
    deadline = _clock() + CLEANUP_BUDGET_SECONDS
    deleted, cursor = 0, after_id

    def delete(prediction_id: int) -> bool | None:
        if _clock() > deadline:
            return None  # out of time: not tried
        return label_studio.delete_prediction(prediction_id)

    with ThreadPoolExecutor(CLEANUP_THREADS, thread_name_prefix="cleanup") as pool:
        while True:
            ids, last = label_studio.predictions_of(ls_id, tags, after_id=cursor, limit=CLEANUP_PAGE,
                                                    duplicates_of=duplicates_of)
            outcomes = list(pool.map(delete, ids))
            deleted += sum(1 for outcome in outcomes if outcome)
            if None in outcomes:
                return deleted, cursor
            if last is None:
                return deleted, None
            cursor = last
            if _clock() > deadline:
                return deleted, cursor


def own_tags(project: Project) -> set[str]:
    """Every model_version the service ever gave this project's predictions."""
    tags = set(ScoringRun.objects.filter(project=project).values_list("tag", flat=True))
    tags |= set(ModelVersion.objects.filter(project=project).values_list("version", flat=True))
    return tags


def drop_unswitched_tag(run: ScoringRun) -> None:
    """A superseded full run's partial predictions never ordered anything: remove them (what
    the time budget leaves, the clean-up job removes after the next push)."""
    if run.mode != ScoringRun.Mode.FULL:
        return
    ls_id = run.project.ls_project_id
    try:
        if label_studio.get_project(ls_id).get("model_version") == run.tag:
            return
        deleted, cursor = delete_tags(ls_id, {run.tag}, after_id=0)
        if cursor is not None:
            request_cleanup(run.project_id, countdown=CLEANUP_RECHECK_SECONDS)
    except label_studio.LabelStudioError as exc:  # the next push's clean-up deletes them
        logger.warning("scoring_cleanup_failed run=%s tag=%s error=%s", run.pk, run.tag, exc)


def prune_pools(days: int) -> int:
    """Stored pools of runs over for more than `days` (cancelled, superseded, failed): a retry
    after that scores its pool again. Pools of queued and running runs always stay."""
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = ScoringPool.objects.exclude(run__status__in=ACTIVE).filter(run__finished_at__lt=cutoff).delete()
    return deleted
