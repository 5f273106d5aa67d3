"""The service's older prediction tags deleted once a newer one orders the queue.

After the switch they no longer count for the sort, so this runs as a job of its own,
never holding up a push. Predictions of other models or people are never touched.
"""
from __future__ import annotations

import logging

from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning import projects
from orchestrator.learning.models import ModelVersion, Project, ScoringRun
from orchestrator.learning.scoring.context import ACTIVE

logger = logging.getLogger(__name__)

# Deleting old tags: how long one request may wait, and how often a long deletion is re-checked.
CLEANUP_REQUEST_SECONDS = 5.0
CLEANUP_RECHECK_SECONDS = 60.0
CLEANUP_CHECKS = 30


def request_cleanup(project_pk: int, *, countdown: float = 0.0, attempt: int = 0) -> None:
    jobs.enqueue(jobs.CLEAN_UP_PREDICTIONS, project_pk, attempt, countdown=countdown)  # lost: the next push asks


def clean_up(project_pk: int, attempt: int = 0) -> str:
    """Delete the service's older tags once a push has switched the project to a newer one.

    Label Studio has no bounded way to delete one version's predictions and deletes ~125/s
    in a single request: a request still running after CLEANUP_REQUEST_SECONDS is left to
    finish inside Label Studio and checked again later.
    """
    project = Project.objects.filter(pk=project_pk).first()
    if project is None or not label_studio.is_configured():
        return "nothing to do"
    ls_id = project.ls_project_id
    if ScoringRun.objects.filter(project=project, status__in=ACTIVE).exists():
        # A push is running: a long deletion would hold up its imports. Look again later.
        if attempt < CLEANUP_CHECKS:
            request_cleanup(project_pk, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1)
        return "after the running push"
    present = label_studio.model_versions(ls_id)
    in_label_studio = label_studio.get_project(ls_id)
    current = in_label_studio.get("model_version")
    projects.remember_title(project, in_label_studio.get("title"))
    keep = {current} | set(ScoringRun.objects.filter(project=project, status__in=ACTIVE).values_list("tag", flat=True))
    stale = sorted(tag for tag in present if tag in own_tags(project) and tag not in keep)
    if not stale:
        return "clean"
    pending = []
    for tag in stale:
        try:
            deleted = label_studio.delete_model_version(ls_id, tag, timeout=CLEANUP_REQUEST_SECONDS)
            logger.info("scoring_old_tag_deleted project=%s tag=%s predictions=%s", ls_id, tag, deleted)
        except label_studio.LabelStudioError as exc:
            logger.info("scoring_old_tag_deleting project=%s tag=%s predictions=%s (%s)", ls_id, tag,
                        present[tag], exc)
            pending.append(tag)
    if pending and attempt < CLEANUP_CHECKS:
        request_cleanup(project_pk, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1)
    return f"deleting {pending}" if pending else f"deleted {stale}"


def own_tags(project: Project) -> set[str]:
    """Every model_version the service ever gave this project's predictions."""
    tags = set(ScoringRun.objects.filter(project=project).values_list("tag", flat=True))
    tags |= set(ModelVersion.objects.filter(project=project).values_list("version", flat=True))
    return tags


def drop_unswitched_tag(run: ScoringRun) -> None:
    """A superseded full run's partial predictions never ordered anything: remove them."""
    if run.mode != ScoringRun.Mode.FULL:
        return
    try:
        current = label_studio.get_project(run.project.ls_project_id).get("model_version")
        if current != run.tag:
            label_studio.delete_model_version(run.project.ls_project_id, run.tag)
    except label_studio.LabelStudioError as exc:  # the next full run's clean-up deletes them
        logger.warning("scoring_cleanup_failed run=%s tag=%s error=%s", run.pk, run.tag, exc)
