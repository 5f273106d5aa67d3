"""The push: a stored pool imported under the run's tag, exactly one prediction per unlabeled task.

Before a chunk is sent its end in the pool is recorded (`inflight_through`); once Label
Studio confirms it, the cursor moves. A chunk whose outcome is unknown (timeout, 5xx,
worker killed) is checked against Label Studio before anything is sent again, and only
the tasks still missing the tag are pushed. A full run makes the tag the project's
`model_version` as soon as its first chunk landed, so the head of the queue is the new
version's within seconds; tasks not pushed yet have no score and sort last.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.utils import timezone

from orchestrator.gateways import label_studio
from orchestrator.learning.models import ScoringRun
from orchestrator.learning.priorities import label_studio_score
from orchestrator.learning.scoring.context import RunContext, call_label_studio, check_current, save
from orchestrator.learning.scoring.pool import Pool

logger = logging.getLogger(__name__)

# After an import whose answer was lost: the tag's count must hold still this long (at most
# SETTLE_CHECKS times) before the service looks at what landed.
SETTLE_SECONDS, SETTLE_CHECKS = 5.0, 36
# Label Studio's feature flag (an environment variable of its server) for an import that
# recomputes only the counters of the tasks it touches; off by default in 1.23.2.
LABEL_STUDIO_MEMORY_EFFICIENT_IMPORT = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


def push_pool(ctx: RunContext, pool: Pool) -> None:
    """Push the pool from the cursor on; a full run switches Label Studio after its first chunk."""
    run = ctx.run
    if run.inflight_through > run.cursor:
        _settle_inflight(ctx, pool)
    while run.cursor < len(pool):
        check_current(run)
        start, end = run.cursor, min(len(pool), run.cursor + ctx.sizer.chunk)
        import_chunk(ctx, predictions_for(ctx, pool, start, end), end)
        save(run, cursor=end, inflight_through=end, done=run.done + (end - start), timings=ctx.timer.rounded())
        if run.mode == ScoringRun.Mode.FULL and run.switched_at is None:
            switch(ctx)


def predictions_for(ctx: RunContext, pool: Pool, start: int, end: int) -> list[dict[str, Any]]:
    """Label Studio predictions for the pool's positions [start, end), under the run's tag."""
    window = slice(start, end)
    if ctx.model is None:  # the cold start's order: a score, no result
        results: list[Any] = [[] for _ in range(end - start)]
    else:
        results = ctx.predictor.backend.results(pool.probabilities[window].astype(np.float64))
    scores = label_studio_score(pool.priorities[window])
    return [{"task": task, "result": result, "score": round(float(score), 6), "model_version": ctx.run.tag}
            for task, result, score in zip(pool.ids[window].tolist(), results, scores)]


def import_chunk(ctx: RunContext, predictions: list[dict[str, Any]], through: int) -> None:
    """Import predictions for the pool's positions up to `through` so each task ends with
    exactly one of the tag.

    The end is recorded first: if the worker dies now, the rerun checks the chunk. On an
    error whose outcome is unknown (timeout, 5xx) or a 400 (a task was deleted meanwhile),
    Label Studio is asked what landed and only the tasks still missing the tag are sent again.
    """
    run = ctx.run
    save(run, inflight_through=through)
    pending = list(predictions)
    if not pending:
        return
    if ctx.tag_count is None:
        ctx.tag_count = _tag_count(ctx)
    before = ctx.tag_count

    def send() -> None:
        if not pending:
            return
        started = time.perf_counter()
        created = ctx.timer("push", lambda: label_studio.import_predictions(ctx.project.ls_project_id, pending))
        ctx.dropped += max(0, len(pending) - created)
        ctx.tag_count = before + created
        _note_import(ctx, len(pending), time.perf_counter() - started)

    def keep_only_what_is_missing(error: BaseException) -> None:
        nonlocal before
        lost_answer = getattr(error, "status_code", None) is None
        settled = _settled_tag_count(ctx) if lost_answer else None
        if settled is not None and settled - before == len(pending):
            ctx.tag_count = settled
            pending.clear()  # the answer was lost, the import was applied: all of the chunk landed
            return
        missing = set(_missing_tag(ctx, [p["task"] for p in pending]))
        pending[:] = [p for p in pending if p["task"] in missing]
        ctx.tag_count = None  # part of the chunk is sent again: count afresh
        if pending:
            ctx.tag_count = before = _tag_count(ctx)

    label_studio.with_retries(
        send, what=lambda: f"pushing predictions for {len(pending)} task(s) (run {run.pk})",
        retry_if=_worth_another_import, before_retry=keep_only_what_is_missing)


def _worth_another_import(error: BaseException) -> bool:
    """Errors after which the import may or may not have landed, or landed in part: look, then resend."""
    if not isinstance(error, label_studio.LabelStudioError):
        return False
    status = error.status_code
    return status is None or status >= 500 or status in (400, 408, 429)


def _note_import(ctx: RunContext, size: int, seconds: float) -> None:
    """Size the next chunk; say once per run when Label Studio's own setup makes every import slow."""
    fixed = ctx.sizer.adapt(size, seconds)
    if fixed is None:
        return
    ctx.timer.set("import_fixed_cost", round(fixed, 3))
    if ctx.warned_fixed_cost:
        return
    ctx.warned_fixed_cost = True
    logger.warning(
        "scoring_slow_label_studio run=%s fixed_seconds_per_import=%.1f: Label Studio recomputes the counters of "
        "every task of the project on each prediction import. Start it with %s=true (or with Redis and an RQ "
        "worker) to make imports cost what they import; see the README, 'Large projects'.",
        ctx.run.pk, fixed, LABEL_STUDIO_MEMORY_EFFICIENT_IMPORT)


def _tag_count(ctx: RunContext) -> int:
    """How many predictions carry the run's tag in Label Studio (one cheap aggregate)."""
    ls_id = ctx.project.ls_project_id
    counts = ctx.timer("verify", lambda: call_label_studio(lambda: label_studio.model_versions(ls_id),
                                                           f"counting predictions of project {ls_id}"))
    return int(counts.get(ctx.run.tag, 0))


def _settled_tag_count(ctx: RunContext) -> int:
    """The tag's count once it stops moving: after a timeout, Label Studio may still be
    applying the import the service gave up waiting for; checking what landed (and sending
    the rest) before it finished would double those predictions."""
    count = _tag_count(ctx)
    for _ in range(SETTLE_CHECKS):
        time.sleep(SETTLE_SECONDS)
        again = _tag_count(ctx)
        if again == count:
            return count
        count = again
    raise label_studio.LabelStudioError(
        f"Label Studio was still adding predictions of {ctx.run.tag} {SETTLE_CHECKS * SETTLE_SECONDS:.0f} s after "
        "an import timed out; the run resumes later from its unconfirmed chunk")


def _missing_tag(ctx: RunContext, task_ids: Sequence[int]) -> list[int]:
    """Those of the tasks still unlabeled in Label Studio that do not carry the run's tag."""
    ls_id = ctx.project.ls_project_id
    tags = ctx.timer("verify", lambda: call_label_studio(lambda: label_studio.prediction_versions(ls_id, task_ids),
                                                         f"checking predictions of project {ls_id}"))
    return [task for task, present in tags.items() if ctx.run.tag not in present]


def _settle_inflight(ctx: RunContext, pool: Pool) -> None:
    """Resume: finish the chunk whose import was sent but never confirmed."""
    run = ctx.run
    start, end = run.cursor, run.inflight_through
    missing = set(_missing_tag(ctx, pool.ids[start:end].tolist()))
    logger.info("scoring_inflight run=%s positions=[%s, %s) missing=%s", run.pk, start, end, len(missing))
    if missing:
        import_chunk(ctx, [p for p in predictions_for(ctx, pool, start, end) if p["task"] in missing], end)
    save(run, cursor=end, done=run.done + (end - start))


def switch(ctx: RunContext) -> bool:
    """Make Label Studio sort by the run's tag: the project's model_version and the queue view."""
    run, policy, ls_id = ctx.run, ctx.policy, ctx.project.ls_project_id
    check_current(run)
    present = call_label_studio(lambda: label_studio.model_versions(ls_id), f"listing project {ls_id}'s model versions")
    if not present.get(run.tag):
        # No unlabeled task to carry it: Label Studio refuses a model_version no prediction has.
        logger.info("scoring_nothing_to_switch project=%s tag=%s", ls_id, run.tag)
        return False
    fields: dict[str, Any] = {"model_version": run.tag}
    if policy.uncertainty_sampling:
        fields["sampling"] = "Uncertainty sampling"
    ctx.timer("switch", lambda: call_label_studio(lambda: label_studio.update_project(ls_id, **fields),
                                                  f"setting project {ls_id}'s model_version"))
    if policy.view_title:
        ctx.timer("switch", lambda: call_label_studio(lambda: label_studio.ensure_queue_view(ls_id, policy.view_title),
                                                      f"saving project {ls_id}'s queue view"))
    save(run, switched_at=timezone.now())
    logger.info("scoring_switched project=%s run=%s tag=%s done=%s", ls_id, run.pk, run.tag, run.done)
    return True
