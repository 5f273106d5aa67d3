"""A scoring run executed under the project's scoring lease: the pool, the push, the switch, the clean-up.

A run first scores its pool (or reloads the one it stored before a failure), pushes it,
then looks for tasks created meanwhile (ids above the pool's) and does the same for them;
a full run's older tags are deleted once it completed. Whatever fails is recorded on the
run with its cursor and pool, so a rerun (or the redelivered Celery message) resumes there.
"""
from __future__ import annotations

import logging
import time

from django.utils import timezone

from backends import backend_for
from orchestrator.gateways import label_studio
from orchestrator.learning import leases, selectors
from orchestrator.learning.model_cache import Predictor, model_cache
from orchestrator.learning.models import ScoringPool, ScoringRun
from orchestrator.learning.scoring import cleanup, pool, push, runs
from orchestrator.learning.scoring.chunks import ChunkSizer
from orchestrator.learning.scoring.context import ACTIVE, HTTP_PHASES, RunContext, Superseded, save
from orchestrator.learning.timings import PhaseTimer

logger = logging.getLogger(__name__)


def run_scoring(run_pk: int) -> str:
    """Run (or resume) one scoring run under the project's scoring lease; its outcome."""
    run = ScoringRun.objects.select_related("project", "project__serving_version", "model_version").filter(pk=run_pk).first()
    if run is None or run.status not in ACTIVE:
        return "gone" if run is None else run.status
    owner = leases.new_owner()
    if not leases.acquire(run.project_id, owner, kind="scoring"):
        until = leases.held_until(run.project_id, kind="scoring")
        delay = (until - timezone.now()).total_seconds() + 0.5 if until else 2.0
        runs.enqueue_run(run, countdown=max(2.0, delay))
        return "busy"
    try:
        with leases.Heartbeat(run.project_id, owner, kind="scoring"):
            return _execute(run, owner)
    finally:
        leases.release(run.project_id, owner, kind="scoring")


def _execute(run: ScoringRun, owner: str) -> str:
    project = run.project
    version = project.usable_serving_version()
    if run.cold_start and version is not None:
        runs.supersede(run, "a model serves now")
        return ScoringRun.Status.SUPERSEDED
    if not run.cold_start and (run.model_version is None or version is None or run.model_version_id != version.pk):
        runs.supersede(run, "the version it scored no longer serves")
        return ScoringRun.Status.SUPERSEDED
    run.status, run.owner, run.attempts = ScoringRun.Status.RUNNING, owner, run.attempts + 1
    run.started_at = run.started_at or timezone.now()
    run.error = ""
    run.save(update_fields=["status", "owner", "attempts", "started_at", "error"])
    logger.info("scoring_started project=%s run=%s tag=%s mode=%s cursor=%s attempt=%s", project.ls_project_id,
                run.pk, run.tag, run.mode, run.cursor, run.attempts)
    try:
        ctx = _context(run)
        while True:  # the pool, then the tasks created while it was pushed
            scored = pool.stored_pool(run) or pool.score_pool(ctx)
            if scored is None:
                break
            push.push_pool(ctx, scored)
            ScoringPool.objects.filter(run=run).delete()
        if run.mode == ScoringRun.Mode.FULL and run.switched_at is None:
            push.switch(ctx)  # nothing was pushed (every task labeled), or the switch failed before
        switched = run.mode == ScoringRun.Mode.FULL and run.switched_at is not None
    except Superseded:
        status = ScoringRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
        if status == ScoringRun.Status.CANCELLED and run.switched_at is not None:
            # Label Studio sorts by its tag already: the pool stays, so a retry goes on from the cursor.
            logger.info("scoring_stopped project=%s run=%s tag=%s done=%s (cancelled)", project.ls_project_id,
                        run.pk, run.tag, run.done)
            return ScoringRun.Status.CANCELLED
        logger.info("scoring_superseded project=%s run=%s tag=%s", project.ls_project_id, run.pk, run.tag)
        ScoringPool.objects.filter(run=run).delete()
        cleanup.drop_unswitched_tag(run)
        return ScoringRun.Status.SUPERSEDED
    except Exception as exc:  # recorded; the cursor stays where Label Studio confirmed it
        if not isinstance(exc, label_studio.LabelStudioError):
            logger.exception("scoring_crashed project=%s run=%s", project.ls_project_id, run.pk)
        save(run, status=ScoringRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000],
             finished_at=timezone.now())
        logger.warning("scoring_failed project=%s run=%s tag=%s done=%s error=%s", project.ls_project_id, run.pk,
                       run.tag, run.done, exc)
        return ScoringRun.Status.FAILED
    note = f"Label Studio dropped {ctx.dropped} prediction(s) as invalid" if ctx.dropped else ""
    save(run, status=ScoringRun.Status.SUCCEEDED, finished_at=timezone.now(), error=note, timings=ctx.timer.rounded())
    logger.info("scoring_succeeded project=%s run=%s tag=%s done=%s timings=%s", project.ls_project_id, run.pk,
                run.tag, run.done, run.timings)
    if switched:  # the older tags no longer count for the sort: delete them, on their own
        cleanup.request_cleanup(project.pk)
    return ScoringRun.Status.SUCCEEDED


def _context(run: ScoringRun) -> RunContext:
    """The run's rows and the model it scores with (from MLflow, or this process's cache; none for a cold start)."""
    project, version = run.project, run.model_version
    backend = backend_for(project.label_config)
    timer = PhaseTimer(run.timings, slowest_of=HTTP_PHASES)
    started = time.perf_counter()
    model = model_cache.load(version.model_uri, backend) if version is not None else None  # None: cold start
    timer.add("load", time.perf_counter() - started)
    predictor = Predictor(project_pk=project.pk, ls_project_id=project.ls_project_id, version=run.tag, backend=backend,
                          model=model, strategy=project.strategy,
                          strategy_params=dict(project.strategy_params or {}), fetched_at=time.monotonic())
    policy = selectors.scoring_policy(project)
    return RunContext(run=run, project=project, policy=policy, predictor=predictor, timer=timer,
                      sizer=ChunkSizer.for_policy(policy.chunk_size))
