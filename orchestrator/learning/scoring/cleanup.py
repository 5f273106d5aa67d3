"""The service's older prediction tags deleted once a newer one orders the queue.

After the switch they no longer count for the sort, so this runs as a job of its own,
never holding up a push. Predictions of other models or people are never touched.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.utils import timezone

from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning import projects
from orchestrator.learning.models import ModelVersion, Project, ScoringPool, ScoringRun
from orchestrator.learning.scoring.context import ACTIVE

logger = logging.getLogger(__name__)

# Deleting old tags: tasks read per page, deletions in flight at once, how long one job
# deletes before it hands over to a fresh one (so a worker is never held for hours), and
# how often a deletion that waits for a push or failed is looked at again.
CLEANUP_PAGE = 500
CLEANUP_THREADS = 4
CLEANUP_BUDGET_SECONDS = 30.0
CLEANUP_RECHECK_SECONDS = 60.0
CLEANUP_CHECKS = 30


def request_cleanup(project_pk: int, *, countdown: float = 0.0, attempt: int = 0, after_id: int = 0) -> None:
    jobs.enqueue(jobs.CLEAN_UP_PREDICTIONS, project_pk, attempt, after_id,
                 countdown=countdown)  # lost: the next push asks


def clean_up(project_pk: int, attempt: int = 0, after_id: int = 0) -> str:
    """Delete the service's older tags once a push has switched the project to a newer one.

    Prediction by prediction, each a short transaction in Label Studio: its one-request
    deletion of a model_version holds one transaction for the whole version (~125 a second),
    and on SQLite every annotator's submit meanwhile fails with "database is locked". Tasks
    are walked by id from `after_id`; a job that has used its time budget hands the rest
    to a new job that starts where it stopped.
    """
    project = Project.objects.filter(pk=project_pk).first()
    if project is None or not label_studio.is_configured():
        return "nothing to do"
    ls_id = project.ls_project_id
    if ScoringRun.objects.filter(project=project, status__in=ACTIVE).exists():
        # A push is running: deletions would compete with its imports. Look again later.
        if attempt < CLEANUP_CHECKS:
            request_cleanup(project_pk, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1, after_id=after_id)
        return "after the running push"
    try:
        stale = _stale_tags(project)
        if not stale:
            return "clean"
        deleted, cursor = delete_tags(ls_id, stale, after_id=after_id)
        if cursor is not None:
            logger.info("scoring_old_tags_deleting project=%s tags=%s deleted=%s after_task=%s", ls_id,
                        sorted(stale), deleted, cursor)
            request_cleanup(project_pk, attempt=attempt, after_id=cursor)
            return f"deleting {sorted(stale)} after task {cursor}"
    except label_studio.LabelStudioError as exc:
        logger.warning("scoring_cleanup_failed project=%s after_task=%s error=%s", ls_id, after_id, exc)
        if attempt < CLEANUP_CHECKS:
            request_cleanup(project_pk, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1, after_id=after_id)
        return f"failed: {exc}"
    logger.info("scoring_old_tags_deleted project=%s tags=%s deleted=%s", ls_id, sorted(stale), deleted)
    return f"deleted {sorted(stale)}"


def _stale_tags(project: Project) -> set[str]:
    """The service's tags with predictions in Label Studio that neither order the queue nor are being pushed."""
    ls_id = project.ls_project_id
    present = label_studio.model_versions(ls_id)
    in_label_studio = label_studio.get_project(ls_id)
    projects.remember_title(project, in_label_studio.get("title"))
    keep = {in_label_studio.get("model_version")}
    keep |= set(ScoringRun.objects.filter(project=project, status__in=ACTIVE).values_list("tag", flat=True))
    return {tag for tag in present if tag in own_tags(project) and tag not in keep}


def delete_tags(ls_id: int, tags: set[str], *, after_id: int = 0) -> tuple[int, int | None]:
    """Delete the predictions of `tags` on the tasks above `after_id`, for CLEANUP_BUDGET_SECONDS at most.

    Returns how many went, and the last task done when the time ran out (None: all done).
    """
    deadline = time.monotonic() + CLEANUP_BUDGET_SECONDS
    deleted, cursor = 0, after_id
    with ThreadPoolExecutor(CLEANUP_THREADS, thread_name_prefix="cleanup") as pool:
        while True:
            ids, last = label_studio.predictions_of(ls_id, tags, after_id=cursor, limit=CLEANUP_PAGE)
            deleted += sum(pool.map(label_studio.delete_prediction, ids))
            if last is None:
                return deleted, None
            cursor = last
            if time.monotonic() > deadline:
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
