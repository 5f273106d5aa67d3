"""Which scoring run answers a request: a new one, a failed one resumed, or the one already covering it.

Full runs push a new tag for every unlabeled task; incremental runs push the current tag
to tasks created since the last push. Requests for one project are serialized on its row,
so triggers firing at the same moment (a promotion, TASKS_CREATED, beat) share one run.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

import strategies
from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning import selectors
from orchestrator.learning.models import COLD_START_VERSION, ModelVersion, Project, ScoringRun
from orchestrator.learning.scoring.context import ACTIVE

logger = logging.getLogger(__name__)

# Tasks created in a burst are scored together, this long after the first event.
TASKS_CREATED_DELAY = 5.0
# Beat resumes a failed push of the serving version this long after it failed, up to MAX_ATTEMPTS.
RESUME_AFTER_SECONDS = 300.0
MAX_ATTEMPTS = 5


# --- triggers ---------------------------------------------------------------------------------------
def request_push(version: ModelVersion) -> ScoringRun | None:
    """A version started serving: push it, unless the project turned automatic pushes off."""
    if not label_studio.is_configured():
        return None
    if not selectors.scoring_policy(version.project).auto_push:
        return None
    return request_scoring(version.project, trigger="promotion")


def on_tasks_created(project_pk: int | None) -> ScoringRun | None:
    """TASKS_CREATED: score the new tasks a few seconds later (a burst of imports is one run)."""
    if project_pk is None or not label_studio.is_configured():
        return None
    project = Project.objects.select_related("serving_version").filter(pk=project_pk).first()
    if project is None or not selectors.scoring_policy(project).auto_push:
        return None
    return request_scoring(project, trigger="tasks_created", mode=ScoringRun.Mode.INCREMENTAL,
                           countdown=TASKS_CREATED_DELAY)


def request_cold_start(project: Project) -> ScoringRun | None:
    """A project connected: before its first model, push the cold start's order once, so the
    queue is ordered from the first task. Later connections of the project change nothing."""
    if not label_studio.is_configured() or project.usable_serving_version() is not None:
        return None
    if ScoringRun.objects.filter(project=project).exists() or not selectors.scoring_policy(project).auto_push:
        return None
    return request_scoring(project, trigger="connect")


def rescore_on_schedule(ls_project_id: int) -> str:
    """A project's re-scoring schedule fired: ask for the run `scheduled_mode` chooses."""
    project = Project.objects.filter(ls_project_id=ls_project_id).first()
    if project is None:
        return "unknown project"
    run = request_scoring(project, trigger="schedule", mode=scheduled_mode(project))
    return f"run={run.pk} tag={run.tag}" if run else "nothing to score with"


def scheduled_mode(project: Project) -> str:
    """A scheduled run re-scores everything when that can change a score: another version or
    strategy than the last push, or a batch-aware strategy (the pool and the labeled set moved).
    Otherwise the scores would come out the same, and it only catches up on new tasks.
    """
    pushed = last_pushed(project)
    if (pushed is None or pushed.model_version_id != project.serving_version_id or pushed.strategy != project.strategy
            or strategies.get(project.strategy).batch_aware):
        return ScoringRun.Mode.FULL
    return ScoringRun.Mode.INCREMENTAL


# --- choosing the run -------------------------------------------------------------------------------
def request_scoring(project: Project, *, trigger: str, mode: str = ScoringRun.Mode.FULL,
                    countdown: float = 0.0, enqueue: bool = True) -> ScoringRun | None:
    """Queue a scoring run of the serving version (before a usable one, of the cold start's order),
    or return the one that already covers the request.

    Full: supersedes runs of other versions; resumes the last failed run of this version
    and strategy. Incremental: tasks created since the last push, under the same tag.
    `enqueue=False` leaves the run for the caller to execute (a management command).
    """
    with transaction.atomic():
        # `of`: lock the project row only (its serving version may be NULL: an outer join).
        locked = Project.objects.select_for_update(of=("self",)).select_related("serving_version").get(pk=project.pk)
        run, start = _pick_run(locked, trigger=trigger, mode=mode)
    if run is not None and start and enqueue:
        enqueue_run(run, countdown)
    return run


def _pick_run(project: Project, *, trigger: str, mode: str) -> tuple[ScoringRun | None, bool]:
    """The run that answers a request, and whether it has to be started (new or resumed)."""
    version = project.usable_serving_version()  # None: the cold start's order
    runs = ScoringRun.objects.filter(project=project)
    # A newer version makes every run of an older one pointless (and a model, the cold start's).
    runs.filter(status__in=ACTIVE).exclude(model_version=version).update(
        status=ScoringRun.Status.SUPERSEDED, finished_at=timezone.now(),
        error="a newer version took over" if version is not None else "the version it scored no longer serves")
    mine = _runs_of(project, version)
    active = mine.filter(status__in=ACTIVE).order_by("-created_at").first()
    version_pk = version.pk if version is not None else None
    if mode == ScoringRun.Mode.INCREMENTAL:
        if active is not None:
            return active, False  # a queued or running run reaches new task ids too
        pushed = last_pushed(project)
        # A full run that failed after it switched Label Studio to its tag: new tasks need
        # that tag, so the request resumes it (below) rather than adding the older one.
        failed_full = pushed is not None and mine.filter(
            mode=ScoringRun.Mode.FULL, status=ScoringRun.Status.FAILED, created_at__gt=pushed.created_at).exists()
        if pushed is None or pushed.model_version_id != version_pk or failed_full:
            mode = ScoringRun.Mode.FULL
        else:
            same_tag = runs.filter(tag=pushed.tag)
            failed = same_tag.filter(status=ScoringRun.Status.FAILED, mode=mode).order_by("-created_at").first()
            newest = same_tag.filter(status=ScoringRun.Status.SUCCEEDED).order_by("-created_at").first()
            if failed is not None and failed.created_at > newest.created_at:
                return _resume(failed, trigger), True
            # Every unlabeled task up to the highest id a completed run of the tag reached has it.
            high = max(same_tag.filter(status=ScoringRun.Status.SUCCEEDED).values_list("high_water", flat=True))
            return ScoringRun.objects.create(
                project=project, model_version=version, tag=pushed.tag, mode=mode, strategy=project.strategy,
                trigger=trigger, high_water=high), True
    if active is not None and active.mode == ScoringRun.Mode.FULL and active.strategy == project.strategy:
        return active, False
    if active is not None:  # an incremental run, or another strategy: the full run replaces it
        supersede(active, "a full run replaced it")
    failed = mine.filter(status=ScoringRun.Status.FAILED, mode=ScoringRun.Mode.FULL,
                         strategy=project.strategy).order_by("-created_at").first()
    pushed = last_pushed(project) if failed is not None else None
    if failed is not None and (pushed is None or failed.created_at > pushed.created_at):
        return _resume(failed, trigger), True
    return ScoringRun.objects.create(project=project, model_version=version, tag=_new_tag(project, version),
                                     mode=mode, strategy=project.strategy, trigger=trigger), True


def _resume(run: ScoringRun, trigger: str) -> ScoringRun:
    """A failed run goes on from its cursor (its unconfirmed chunk is checked first)."""
    run.status, run.trigger = ScoringRun.Status.QUEUED, trigger
    run.save(update_fields=["status", "trigger"])
    logger.info("scoring_resume project=%s run=%s tag=%s cursor=%s", run.project.ls_project_id, run.pk, run.tag,
                run.cursor)
    return run


def last_pushed(project: Project) -> ScoringRun | None:
    """The last full run that completed: its tag is the project's model_version in Label Studio."""
    return (ScoringRun.objects.filter(project=project, mode=ScoringRun.Mode.FULL, status=ScoringRun.Status.SUCCEEDED)
            .order_by("-finished_at", "-pk").first())


def _new_tag(project: Project, version: ModelVersion | None) -> str:
    """The version string itself for its first push; `<version>.<n>` for re-scorings of it
    (`cold-start`, `cold-start.<n>` without a version)."""
    earlier = _runs_of(project, version).filter(mode=ScoringRun.Mode.FULL).count()
    name = version.version if version is not None else COLD_START_VERSION
    return name if earlier == 0 else f"{name}.{earlier + 1}"


def _runs_of(project: Project, version: ModelVersion | None):
    """A version's runs; for None, the cold start's (runs of a deleted version lost theirs too)."""
    runs = ScoringRun.objects.filter(project=project, model_version=version)
    return runs if version is not None else runs.filter(tag__startswith=COLD_START_VERSION)


def enqueue_run(run: ScoringRun, countdown: float = 0.0) -> ScoringRun:
    jobs.enqueue(jobs.RUN_SCORING, run.pk, countdown=countdown)  # lost: reconciliation sends it again
    return run


def supersede(run: ScoringRun, why: str) -> None:
    ScoringRun.objects.filter(pk=run.pk, status__in=ACTIVE).update(
        status=ScoringRun.Status.SUPERSEDED, finished_at=timezone.now(), error=why)


# --- an operator's acts -----------------------------------------------------------------------------
class RunError(ValueError):
    """A run cannot be cancelled or retried in its state."""


def cancel(run: ScoringRun, *, by: str = "") -> ScoringRun:
    """Stop a queued or running run: a running one stops before its next chunk. What it pushed
    stays in Label Studio; once it switched the queue to its tag, tasks it did not reach sort
    last until a retry or the next push."""
    why = "cancelled" + (f" by {by}" if by else "")
    if not ScoringRun.objects.filter(pk=run.pk, status__in=ACTIVE).update(
            status=ScoringRun.Status.CANCELLED, finished_at=timezone.now(), error=why):
        run.refresh_from_db()
        raise RunError(f"scoring run {run.pk} is {run.status}: only a queued or running run can be cancelled")
    run.refresh_from_db()
    logger.info("scoring_cancelled project=%s run=%s tag=%s done=%s", run.project.ls_project_id, run.pk, run.tag,
                run.done)
    return run


def retry(run: ScoringRun) -> ScoringRun | None:
    """Go on with a failed or cancelled run from its cursor if it scores what serves now, and no
    full run completed since; otherwise ask for a new full run of what serves. The run that answers."""
    if run.status in ACTIVE:
        raise RunError(f"scoring run {run.pk} is {run.status} already")
    if run.status == ScoringRun.Status.SUCCEEDED:
        raise RunError(f"scoring run {run.pk} succeeded: re-score the project instead (a new push)")
    with transaction.atomic():
        project = Project.objects.select_for_update(of=("self",)).select_related("serving_version").get(
            pk=run.project_id)
        run.refresh_from_db()
        version = project.usable_serving_version()
        serves = (run.model_version_id == version.pk) if version is not None else run.cold_start
        pushed = last_pushed(project)
        # A cancelled run that had not switched the queue yet lost its predictions (they never
        # ordered anything): it starts again as a new run.
        kept = run.status == ScoringRun.Status.FAILED or (run.status == ScoringRun.Status.CANCELLED
                                                          and run.switched_at is not None)
        resumable = (kept and run.mode == ScoringRun.Mode.FULL and serves and run.strategy == project.strategy
                     and (pushed is None or run.created_at > pushed.created_at)
                     and not ScoringRun.objects.filter(project=project, status__in=ACTIVE).exists())
        if resumable:
            run.finished_at = None
            run.save(update_fields=["finished_at"])
            resumed = _resume(run, "retry")
    if resumable:
        return enqueue_run(resumed)
    return request_scoring(project, trigger="retry")


# --- reconciliation ---------------------------------------------------------------------------------
def reconcile() -> dict[str, int]:
    """Beat's pass: re-send runs whose message was lost or whose worker died, and resume
    failed pushes of the serving version a few minutes later (Label Studio may be back)."""
    now = timezone.now()
    resent = resumed = 0
    retry_before = now - timedelta(seconds=RESUME_AFTER_SECONDS)
    of_what_serves = Q(project__serving_version=F("model_version")) | Q(
        project__serving_version=None, model_version=None, tag__startswith=COLD_START_VERSION)
    failed = (ScoringRun.objects.filter(of_what_serves, status=ScoringRun.Status.FAILED, finished_at__lt=retry_before,
                                        attempts__lt=MAX_ATTEMPTS)
              .values_list("project_id", flat=True).distinct())
    broken = 0  # one project's bad state never stops the pass for the others
    for project_pk in list(failed):
        try:
            latest = ScoringRun.objects.filter(project_id=project_pk).order_by("-created_at", "-pk").first()
            if latest.status == ScoringRun.Status.FAILED:  # nothing newer took over since
                run = request_scoring(latest.project, trigger="resume", mode=latest.mode)
                resumed += int(run is not None and run.pk == latest.pk)
        except Exception:
            logger.exception("reconcile_scoring_failed project_pk=%s", project_pk)
            broken += 1
    stale = now - timedelta(minutes=2)
    for run in ScoringRun.objects.filter(status__in=ACTIVE).select_related("project"):
        lease_until = run.project.scoring_lease_until
        if lease_until is not None and lease_until > now:
            continue
        if run.status == ScoringRun.Status.QUEUED and run.created_at > stale:
            continue
        try:
            enqueue_run(run)
        except Exception:
            logger.exception("reconcile_scoring_failed project_pk=%s run=%s", run.project_id, run.pk)
            broken += 1
            continue
        resent += 1
    return {"scoring_resent": resent, "scoring_resumed": resumed, "projects_failed": broken}
