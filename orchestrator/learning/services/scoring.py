"""The push loop: score every unlabeled task with the serving version, push to Label Studio.

Label Studio's Data Manager sorts by "Prediction score" only over predictions whose
`model_version` equals the project's `model_version` (see the README). A run:
1. scores its pool: pages through the tasks without annotations by id (keyset: "id > last
   seen", page 1), predicts each page and keeps only ids, probabilities and the strategy's
   priorities (batch-aware strategies rank the whole pool at the end), then stores the
   pool sorted most informative first;
2. pushes the pool in that order, chunk by chunk, under the run's tag, with
   `score = 1 - priority` (ascending = most informative first);
3. (full runs) makes the tag the project's `model_version` as soon as the first chunk
   landed, so the head of the "Active learning queue" view is the new version's within
   seconds; tasks not pushed yet have no score and sort last until their chunk lands;
4. scores and pushes tasks created meanwhile (ids above the pool's), and once complete
   asks for the service's older tags to be deleted (never a version it did not create).

Exactly one prediction of the tag per unlabeled task, through failures: before a chunk is
sent its end in the pool is recorded (`inflight_through`); after Label Studio confirms
it, the cursor moves. A chunk whose outcome is unknown (timeout, 5xx, worker killed) is
checked against Label Studio before anything is sent again (its tasks by id), and only
the tasks still missing the tag are pushed. A rerun (or the redelivered Celery message)
resumes there, from the stored pool.
"""
from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import strategies
from backends import TextClassifier, backend_for
from orchestrator.gateways import label_studio
from orchestrator.learning.models import ModelVersion, Project, ScoringPolicy, ScoringPool, ScoringRun
from orchestrator.learning.serving import Serving, registry
from orchestrator.learning.services import leases
from orchestrator.learning.services.predictions import label_studio_score, model_priorities

logger = logging.getLogger(__name__)

# Tasks created in a burst are scored together, this long after the first event.
TASKS_CREATED_DELAY = 5.0
# Dimensions of the random projection of TF-IDF features that diversity strategies compare.
PROJECTED_DIMENSIONS = 64
# Labeled tasks read (most recent first) as the "already labeled" side of ranked batch.
LABELED_SAMPLE = 2000
ACTIVE = (ScoringRun.Status.QUEUED, ScoringRun.Status.RUNNING)
# Deleting old tags: how long one request may wait, and how often a long deletion is re-checked.
CLEANUP_REQUEST_SECONDS = 5.0
CLEANUP_RECHECK_SECONDS = 60.0
CLEANUP_CHECKS = 30
# Beat resumes a failed push of the serving version this long after it failed, up to MAX_ATTEMPTS.
RESUME_AFTER_SECONDS = 300.0
MAX_ATTEMPTS = 5
# Chunks start at HEAD_CHUNK (at most the policy's chunk_size): the first one is what Label
# Studio sorts by once it landed, so it is small. They double while imports take under FAST
# and halve above SLOW seconds, between MIN_CHUNK and the policy's chunk_size. FAST is half
# of SLOW: an import's cost is a fixed part plus a part per prediction, so doubling a chunk
# that took under FAST cannot take over SLOW, and SLOW keeps every request under 30 s.
FAST_IMPORT_SECONDS, SLOW_IMPORT_SECONDS = 13.0, 26.0
HEAD_CHUNK, MIN_CHUNK = 500, 100
# Unlabeled tasks read per request while scoring a pool.
READ_PAGE = 2000
# Label Studio's feature flag (an environment variable of its server) for an import that
# recomputes only the counters of the tasks it touches; off by default in 1.23.2.
LABEL_STUDIO_MEMORY_EFFICIENT_IMPORT = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"
# After an import whose answer was lost: the tag's count must hold still this long (at most
# SETTLE_CHECKS times) before the service looks at what landed.
SETTLE_SECONDS, SETTLE_CHECKS = 5.0, 36
HTTP_PHASES = frozenset({"read", "push", "verify", "switch", "cleanup"})


class Superseded(Exception):
    """A newer run took over this run's project."""


def policy_of(project: Project) -> ScoringPolicy:
    return ScoringPolicy.objects.get_or_create(project=project)[0]


def servable(project: Project) -> ModelVersion | None:
    """The version a push would score with: the serving one, if it fits the current label config."""
    version = project.serving
    if version is None or not version.model_uri or version.label_config_digest != project.label_config_digest:
        return None
    return version


# --- asking for runs ------------------------------------------------------------------------------
def request_scoring(project: Project, *, trigger: str, mode: str = ScoringRun.Mode.FULL,
                    countdown: float = 0.0, enqueue: bool = True) -> ScoringRun | None:
    """Queue a scoring run of the serving version, or return the one that already covers the request.

    Full: supersedes runs of other versions; resumes the last failed run of this version
    and strategy. Incremental: tasks created since the last push, under the same tag.
    Requests for one project are serialized on its row, so triggers firing at the same
    moment (a promotion, TASKS_CREATED, beat) share one run; the message is sent after commit.
    """
    with transaction.atomic():
        # `of`: lock the project row only (its serving version may be NULL: an outer join).
        locked = Project.objects.select_for_update(of=("self",)).select_related("serving").get(pk=project.pk)
        run, start = _pick_run(locked, trigger=trigger, mode=mode)
    if run is not None and start and enqueue:
        _enqueue(run, countdown)
    return run


def _pick_run(project: Project, *, trigger: str, mode: str) -> tuple[ScoringRun | None, bool]:
    """The run that answers a request, and whether it has to be started (new or resumed)."""
    version = servable(project)
    if version is None:
        logger.info("scoring_skipped project=%s reason=no_trained_version", project.ls_project_id)
        return None, False
    runs = ScoringRun.objects.filter(project=project)
    # A newer version makes every run of an older one pointless.
    runs.filter(status__in=ACTIVE).exclude(model_version=version).update(
        status=ScoringRun.Status.SUPERSEDED, finished_at=timezone.now(), error="a newer version took over")
    active = runs.filter(status__in=ACTIVE, model_version=version).order_by("-created_at").first()
    if mode == ScoringRun.Mode.INCREMENTAL:
        if active is not None:
            return active, False  # a queued or running run reaches new task ids too
        pushed = last_pushed(project)
        # A full run that failed after it switched Label Studio to its tag: new tasks need
        # that tag, so the request resumes it (below) rather than adding the older one.
        failed_full = pushed is not None and runs.filter(
            mode=ScoringRun.Mode.FULL, status=ScoringRun.Status.FAILED, model_version=version,
            created_at__gt=pushed.created_at).exists()
        if pushed is None or pushed.model_version_id != version.pk or failed_full:
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
        _supersede(active, "a full run replaced it")
    failed = runs.filter(status=ScoringRun.Status.FAILED, mode=ScoringRun.Mode.FULL, model_version=version,
                         strategy=project.strategy).order_by("-created_at").first()
    pushed = last_pushed(project) if failed is not None else None
    if failed is not None and (pushed is None or failed.created_at > pushed.created_at):
        return _resume(failed, trigger), True
    return ScoringRun.objects.create(project=project, model_version=version, tag=_new_tag(version), mode=mode,
                                     strategy=project.strategy, trigger=trigger), True


def scheduled_mode(project: Project) -> str:
    """A scheduled run re-scores everything when that can change a score: another version or
    strategy than the last push, or a batch-aware strategy (the pool and the labeled set moved).
    Otherwise the scores would come out the same, and it only catches up on new tasks.
    """
    pushed = last_pushed(project)
    if (pushed is None or pushed.model_version_id != project.serving_id or pushed.strategy != project.strategy
            or strategies.get(project.strategy).batch_aware):
        return ScoringRun.Mode.FULL
    return ScoringRun.Mode.INCREMENTAL


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


def _new_tag(version: ModelVersion) -> str:
    """The version string itself for its first push; `<version>.<n>` for re-scorings of it."""
    earlier = ScoringRun.objects.filter(model_version=version, mode=ScoringRun.Mode.FULL).count()
    return version.version if earlier == 0 else f"{version.version}.{earlier + 1}"


def _enqueue(run: ScoringRun, countdown: float = 0.0) -> ScoringRun:
    from orchestrator.learning import tasks

    try:
        tasks.score_project.apply_async((run.pk,), countdown=max(0.0, countdown))
    except Exception:
        logger.exception("scoring_not_queued run=%s (reconciliation will retry)", run.pk)
    return run


def _supersede(run: ScoringRun, why: str) -> None:
    ScoringRun.objects.filter(pk=run.pk, status__in=ACTIVE).update(
        status=ScoringRun.Status.SUPERSEDED, finished_at=timezone.now(), error=why)


def on_promoted(version: ModelVersion) -> ScoringRun | None:
    """After a version starts serving: push it, unless the project turned automatic pushes off."""
    if not label_studio.is_configured():
        return None
    if not policy_of(version.project).auto_push:
        return None
    return request_scoring(version.project, trigger="promotion")


def on_tasks_created(project_id: int | None) -> ScoringRun | None:
    """TASKS_CREATED: score the new tasks a few seconds later (a burst of imports is one run)."""
    if project_id is None or not label_studio.is_configured():
        return None
    project = Project.objects.select_related("serving").filter(pk=project_id).first()
    if project is None or servable(project) is None or not policy_of(project).auto_push:
        return None
    return request_scoring(project, trigger="tasks_created", mode=ScoringRun.Mode.INCREMENTAL,
                           countdown=TASKS_CREATED_DELAY)


# --- running --------------------------------------------------------------------------------------
@dataclass
class _Context:
    run: ScoringRun
    project: Project
    policy: ScoringPolicy
    serving: Serving
    model: TextClassifier
    timings: dict[str, float] = field(default_factory=dict)
    dropped: int = 0
    chunk: int = HEAD_CHUNK
    max_chunk: int = 5000
    last_import: tuple[int, float] | None = None  # (predictions, seconds)
    per_prediction: float | None = None  # seconds, estimated from imports of different sizes
    # Predictions of the run's tag in Label Studio, kept up to date from each import's answer
    # (None: ask). Only a lost answer needs it; deletions meanwhile can only lower the truth,
    # which sends that check to the per-task one, never past it.
    tag_count: int | None = None
    warned_fixed_cost: bool = False

    def adapt(self, size: int, seconds: float) -> None:
        """Size the next chunk from how long the last import of `size` predictions took.

        An import costs a fixed part plus a part per prediction. Without Redis, Label Studio
        recomputes the counters of every task of the project on each import, joining their
        predictions: a fixed part that grows with the project and with the predictions it
        holds (10 s per request on 10k tasks carrying a previous push, 30 s and more on
        100k tasks, here). So a quick import doubles the chunk; a slow one halves it only
        when its own predictions made it slow. When the fixed part dominates, smaller
        chunks cannot make a request quick, they only add requests that each pay it again:
        the chunk grows instead. The part per prediction is the smallest slope seen between
        imports of different sizes (the fixed part only grows, which steepens later slopes).
        """
        if self.last_import is not None and self.last_import[0] != size:
            slope = (seconds - self.last_import[1]) / (size - self.last_import[0])
            if slope > 0:
                self.per_prediction = slope if self.per_prediction is None else min(self.per_prediction, slope)
        self.last_import = (size, seconds)
        if seconds < FAST_IMPORT_SECONDS:
            self.chunk = min(self.max_chunk, self.chunk * 2)
        elif seconds > SLOW_IMPORT_SECONDS:
            own = seconds if self.per_prediction is None else self.per_prediction * size
            if 2 * own >= seconds:  # the predictions themselves: fewer per request
                self.chunk = max(min(MIN_CHUNK, self.max_chunk), self.chunk // 2)
            else:  # Label Studio's fixed work per request: fewer requests
                self.chunk = min(self.max_chunk, self.chunk * 2)
                self._report_fixed_cost(seconds - own)

    def _report_fixed_cost(self, fixed: float) -> None:
        """Say once per run that Label Studio's own setup makes every import slow, and the cure."""
        self.timings["import_fixed_cost"] = round(fixed, 3)
        if self.warned_fixed_cost:
            return
        self.warned_fixed_cost = True
        logger.warning(
            "scoring_slow_label_studio run=%s fixed_seconds_per_import=%.1f: Label Studio recomputes the counters of "
            "every task of the project on each prediction import. Start it with %s=true (or with Redis and an RQ "
            "worker) to make imports cost what they import; see the README, 'Large projects'.",
            getattr(self.run, "pk", None), fixed, LABEL_STUDIO_MEMORY_EFFICIENT_IMPORT)

    def timed(self, phase: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            elapsed = time.perf_counter() - started
            self.timings[phase] = self.timings.get(phase, 0.0) + elapsed
            if phase in HTTP_PHASES:  # the longest single call to Label Studio (with its retries)
                self.timings["slowest_call"] = max(self.timings.get("slowest_call", 0.0), elapsed)


def run_scoring(run_pk: int, *, owner: str | None = None) -> str:
    """The Celery task's body: run (or resume) one scoring run under the project's scoring lease."""
    run = ScoringRun.objects.select_related("project", "project__serving", "model_version").filter(pk=run_pk).first()
    if run is None or run.status not in ACTIVE:
        return "gone" if run is None else run.status
    owner = owner or leases.new_owner()
    if not leases.acquire(run.project_id, owner, kind="scoring"):
        until = leases.held_until(run.project_id, kind="scoring")
        delay = (until - timezone.now()).total_seconds() + 0.5 if until else 2.0
        _enqueue(run, countdown=max(2.0, delay))
        return "busy"
    try:
        with leases.Heartbeat(run.project_id, owner, kind="scoring"):
            return _execute(run, owner)
    finally:
        leases.release(run.project_id, owner, kind="scoring")


def _execute(run: ScoringRun, owner: str) -> str:
    project = run.project
    serving = servable(project)
    if run.model_version is None or serving is None or run.model_version_id != serving.pk:
        _supersede(run, "the version it scored no longer serves")
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
            pool = _stored_pool(run) or _score_pool(ctx)
            if pool is None:
                break
            _push_pool(ctx, pool)
            ScoringPool.objects.filter(run=run).delete()
        if run.mode == ScoringRun.Mode.FULL and run.switched_at is None:
            _switch(ctx)  # nothing was pushed (every task labeled), or the switch failed before
        switched = run.mode == ScoringRun.Mode.FULL and run.switched_at is not None
    except Superseded:
        logger.info("scoring_superseded project=%s run=%s tag=%s", project.ls_project_id, run.pk, run.tag)
        ScoringPool.objects.filter(run=run).delete()
        _drop_unswitched_tag(run)
        return ScoringRun.Status.SUPERSEDED
    except Exception as exc:  # recorded; the cursor stays where Label Studio confirmed it
        if not isinstance(exc, label_studio.LabelStudioError):
            logger.exception("scoring_crashed project=%s run=%s", project.ls_project_id, run.pk)
        _save(run, status=ScoringRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:5000],
              finished_at=timezone.now())
        logger.warning("scoring_failed project=%s run=%s tag=%s done=%s error=%s", project.ls_project_id, run.pk,
                       run.tag, run.done, exc)
        return ScoringRun.Status.FAILED
    note = f"Label Studio dropped {ctx.dropped} prediction(s) as invalid" if ctx.dropped else ""
    _save(run, status=ScoringRun.Status.SUCCEEDED, finished_at=timezone.now(), error=note,
          timings={k: round(v, 3) for k, v in ctx.timings.items()})
    logger.info("scoring_succeeded project=%s run=%s tag=%s done=%s timings=%s", project.ls_project_id, run.pk,
                run.tag, run.done, run.timings)
    if switched:  # the older tags no longer count for the sort: delete them, on their own
        _request_cleanup(project.pk)
    return ScoringRun.Status.SUCCEEDED


def _context(run: ScoringRun) -> _Context:
    project, version = run.project, run.model_version
    backend = backend_for(project.label_config)
    started = time.perf_counter()
    model = registry.load(version.model_uri, backend)  # from MLflow, or this process's cache
    timings = dict(run.timings or {})
    timings["load"] = timings.get("load", 0.0) + time.perf_counter() - started
    serving = Serving(project_pk=project.pk, ls_project_id=project.ls_project_id, version=run.tag, backend=backend,
                      model=model, strategy=project.strategy, strategy_params=dict(project.strategy_params or {}),
                      fetched_at=time.monotonic())
    policy = policy_of(project)
    return _Context(run=run, project=project, policy=policy, serving=serving, model=model,
                    timings=timings, chunk=min(HEAD_CHUNK, policy.chunk_size),
                    max_chunk=policy.chunk_size)


def _save(run: ScoringRun, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(run, name, value)
    ScoringRun.objects.filter(pk=run.pk).update(**fields)


def _check_current(run: ScoringRun) -> None:
    status = ScoringRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
    if status != ScoringRun.Status.RUNNING:
        raise Superseded()


def _ls(call: Callable[[], Any], what: str) -> Any:
    return label_studio.with_retries(call, what=what)


@dataclass
class _Pool:
    """Scored tasks in push order (the most informative first)."""

    ids: np.ndarray  # int64
    probabilities: np.ndarray  # float32, one row per task, columns = the backend's labels
    priorities: np.ndarray  # float64, the strategy's: higher = label first

    def __len__(self) -> int:
        return len(self.ids)

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, ids=self.ids, probabilities=self.probabilities, priorities=self.priorities)
        return buffer.getvalue()

    @classmethod
    def loads(cls, data: bytes) -> _Pool:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as arrays:
            return cls(arrays["ids"], arrays["probabilities"], arrays["priorities"])


def _stored_pool(run: ScoringRun) -> _Pool | None:
    data = ScoringPool.objects.filter(run=run).values_list("data", flat=True).first()
    return None if data is None else _Pool.loads(data)


def _read_page(ctx: _Context, after_id: int) -> list[dict[str, Any]]:
    run = ctx.run
    tasks, total = ctx.timed("read", lambda: _ls(
        lambda: label_studio.unlabeled_tasks(ctx.project.ls_project_id, after_id=after_id, limit=READ_PAGE),
        f"listing unlabeled tasks of project {ctx.project.ls_project_id}"))
    if after_id == run.high_water and run.done + total != run.total:  # the first page: the pool's size
        _save(run, total=run.done + total)
    return tasks


def _score_pool(ctx: _Context) -> _Pool | None:
    """Score every unlabeled task above `high_water` and store them most informative first.

    Only ids, probabilities and priorities stay in memory (about 24 bytes a task for two
    labels; batch-aware strategies add 64 floats); each page's texts are dropped once
    predicted. Batch-aware strategies rank the whole pool, so a score reflects the rank.
    """
    run = ctx.run
    batch_aware = strategies.get(ctx.project.strategy).batch_aware
    projector = _Projector() if batch_aware else None
    ids: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    priorities: list[np.ndarray] = []
    features: list[np.ndarray] = []
    after = run.high_water
    while True:
        _check_current(run)
        tasks = _read_page(ctx, after)
        if not tasks:
            break
        texts = ctx.serving.backend.texts(tasks, _fetch())
        page_ids = np.array([int(t["id"]) for t in tasks], dtype=np.int64)
        page = ctx.timed("score", lambda: ctx.model.predict_proba(texts))
        if projector is not None:
            features.append(ctx.timed("score", lambda: projector(ctx.model.features(texts))))
        else:
            priorities.append(ctx.timed("score", lambda: model_priorities(ctx.serving, page, page_ids.tolist(),
                                                                          texts)))
        ids.append(page_ids)
        probabilities.append(np.asarray(page, dtype=np.float32))
        after = int(page_ids.max())
    if not ids:
        return None
    pool_ids, pool_probabilities = np.concatenate(ids), np.concatenate(probabilities)
    if projector is not None:
        pool_priorities = _rank_pool(ctx, projector, pool_probabilities, np.concatenate(features))
    else:
        pool_priorities = np.concatenate(priorities).astype(np.float64)
    order = np.lexsort((pool_ids, -pool_priorities))  # highest priority first, then by id
    pool = _Pool(pool_ids[order], pool_probabilities[order], pool_priorities[order])
    with transaction.atomic():
        ScoringPool.objects.update_or_create(run=run, defaults={"size": len(pool), "data": pool.dumps()})
        _save(run, cursor=0, inflight_through=0, high_water=max(run.high_water, int(pool_ids.max())),
              total=run.done + len(pool))
    logger.info("scoring_pool_ready run=%s tasks=%s score_seconds=%.1f", run.pk, len(pool),
                ctx.timings.get("score", 0.0))
    return pool


def _rank_pool(ctx: _Context, projector: _Projector, probabilities: np.ndarray,
               features: np.ndarray) -> np.ndarray:
    labeled = ctx.timed("read", lambda: _labeled_texts(ctx))
    labeled_features = projector(ctx.model.features(labeled)) if labeled else None
    params = dict(ctx.serving.strategy_params)
    params.setdefault("multilabel", ctx.serving.backend.multiple)
    return ctx.timed("score", lambda: strategies.priorities(
        ctx.project.strategy, probabilities=probabilities.astype(np.float64), features=features,
        labeled_features=labeled_features, **params))


def _push_pool(ctx: _Context, pool: _Pool) -> None:
    """Push the pool from the cursor on; a full run switches Label Studio after its first chunk."""
    run = ctx.run
    if run.inflight_through > run.cursor:
        _settle_inflight(ctx, pool)
    while run.cursor < len(pool):
        _check_current(run)
        start, end = run.cursor, min(len(pool), run.cursor + ctx.chunk)
        _import(ctx, _predictions(ctx, pool, start, end), end)
        _save(run, cursor=end, inflight_through=end, done=run.done + (end - start),
              timings={k: round(v, 3) for k, v in ctx.timings.items()})
        if run.mode == ScoringRun.Mode.FULL and run.switched_at is None:
            _switch(ctx)


class _Projector:
    """A fixed sparse random projection of TF-IDF rows to a few dense dimensions.

    Cosine distances survive it approximately (Johnson-Lindenstrauss), which is all the
    diversity term needs, at 64 floats per task instead of a vocabulary-wide row.
    """

    def __init__(self) -> None:
        self._projection = None

    def __call__(self, matrix) -> np.ndarray:
        if self._projection is None:
            import scipy.sparse as sp
            from sklearn.random_projection import SparseRandomProjection

            self._projection = SparseRandomProjection(n_components=PROJECTED_DIMENSIONS, dense_output=True,
                                                      random_state=0).fit(sp.csr_matrix((1, matrix.shape[1])))
        return np.asarray(self._projection.transform(matrix), dtype=np.float32)


def _labeled_texts(ctx: _Context) -> list[str]:
    ls_id = ctx.project.ls_project_id
    tasks = _ls(lambda: label_studio.labeled_tasks(ls_id, limit=LABELED_SAMPLE),
                f"reading labeled tasks of project {ls_id}")
    return ctx.serving.backend.texts(tasks, _fetch())


def _fetch():
    return label_studio.fetch_text if label_studio.is_configured() else None


def _predictions(ctx: _Context, pool: _Pool, start: int, end: int) -> list[dict[str, Any]]:
    window = slice(start, end)
    results = ctx.serving.backend.results(pool.probabilities[window].astype(np.float64))
    scores = label_studio_score(pool.priorities[window])
    return [{"task": task, "result": result, "score": round(float(score), 6), "model_version": ctx.run.tag}
            for task, result, score in zip(pool.ids[window].tolist(), results, scores)]


def _import(ctx: _Context, predictions: list[dict[str, Any]], through: int) -> None:
    """Import predictions for the pool's positions up to `through` so each task ends with
    exactly one of the tag.

    The end is recorded first: if the worker dies now, the rerun checks the chunk. On an
    error whose outcome is unknown (timeout, 5xx) or a 400 (a task was deleted meanwhile),
    Label Studio is asked what landed and only the tasks still missing the tag are sent again.
    """
    run = ctx.run
    _save(run, inflight_through=through)
    attempts, backoff = settings.LABEL_STUDIO_RETRIES, settings.LABEL_STUDIO_RETRY_BACKOFF
    for attempt in range(1, attempts + 1):
        if not predictions:
            return
        if ctx.tag_count is None:
            ctx.tag_count = _tag_count(ctx)
        before = ctx.tag_count
        try:
            started = time.perf_counter()
            created = ctx.timed("push", lambda: label_studio.import_predictions(ctx.project.ls_project_id,
                                                                                 predictions))
            ctx.dropped += max(0, len(predictions) - created)
            ctx.tag_count = before + created
            ctx.adapt(len(predictions), time.perf_counter() - started)
            return
        except label_studio.LabelStudioError as exc:
            status = exc.status_code
            if attempt == attempts or not (status is None or status >= 500 or status in (400, 408, 429)):
                raise label_studio.LabelStudioError(
                    f"pushing predictions for {len(predictions)} task(s) failed after {attempt} attempt(s): {exc}",
                    status_code=status) from exc
            delay = backoff * 2 ** (attempt - 1)
            logger.warning("scoring_push_retry run=%s attempt=%s delay=%.1fs error=%s", run.pk, attempt, delay, exc)
            time.sleep(delay)
            settled = _settled_tag_count(ctx) if status is None else None
            if settled is not None and settled - before == len(predictions):
                ctx.tag_count = settled
                return  # the answer was lost, the import was applied: all of the chunk landed
            ctx.tag_count = None  # part of the chunk is sent again: count afresh
            missing = set(_missing_tag(ctx, [p["task"] for p in predictions]))
            predictions = [p for p in predictions if p["task"] in missing]


def _tag_count(ctx: _Context) -> int:
    """How many predictions carry the run's tag in Label Studio (one cheap aggregate)."""
    ls_id = ctx.project.ls_project_id
    counts = ctx.timed("verify", lambda: _ls(lambda: label_studio.model_versions(ls_id),
                                             f"counting predictions of project {ls_id}"))
    return int(counts.get(ctx.run.tag, 0))


def _settled_tag_count(ctx: _Context) -> int:
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


def _missing_tag(ctx: _Context, task_ids: Sequence[int]) -> list[int]:
    """Those of the tasks still unlabeled in Label Studio that do not carry the run's tag."""
    tags = ctx.timed("verify", lambda: _ls(
        lambda: label_studio.prediction_versions(ctx.project.ls_project_id, task_ids),
        f"checking predictions of project {ctx.project.ls_project_id}"))
    return [task for task, present in tags.items() if ctx.run.tag not in present]


def _settle_inflight(ctx: _Context, pool: _Pool) -> None:
    """Resume: finish the chunk whose import was sent but never confirmed."""
    run = ctx.run
    start, end = run.cursor, run.inflight_through
    missing = set(_missing_tag(ctx, pool.ids[start:end].tolist()))
    logger.info("scoring_inflight run=%s positions=[%s, %s) missing=%s", run.pk, start, end, len(missing))
    if missing:
        _import(ctx, [p for p in _predictions(ctx, pool, start, end) if p["task"] in missing], end)
    _save(run, cursor=end, done=run.done + (end - start))


def _switch(ctx: _Context) -> bool:
    """Make Label Studio sort by the run's tag: the project's model_version and the queue view."""
    run, project, policy = ctx.run, ctx.project, ctx.policy
    ls_id = project.ls_project_id
    _check_current(run)
    present = _ls(lambda: label_studio.model_versions(ls_id), f"listing project {ls_id}'s model versions")
    if not present.get(run.tag):
        # No unlabeled task to carry it: Label Studio refuses a model_version no prediction has.
        logger.info("scoring_nothing_to_switch project=%s tag=%s", ls_id, run.tag)
        return False
    fields: dict[str, Any] = {"model_version": run.tag}
    if policy.uncertainty_sampling:
        fields["sampling"] = "Uncertainty sampling"
    ctx.timed("switch", lambda: _ls(lambda: label_studio.update_project(ls_id, **fields),
                                    f"setting project {ls_id}'s model_version"))
    if policy.view_title:
        ctx.timed("switch", lambda: _ls(lambda: ensure_queue_view(ls_id, policy.view_title),
                                        f"saving project {ls_id}'s queue view"))
    _save(run, switched_at=timezone.now())
    logger.info("scoring_switched project=%s run=%s tag=%s done=%s", ls_id, run.pk, run.tag, run.done)
    return True


def _request_cleanup(project_pk: int, *, countdown: float = 0.0, attempt: int = 0) -> None:
    from orchestrator.learning import tasks

    try:
        tasks.clean_up_predictions.apply_async((project_pk, attempt), countdown=countdown)
    except Exception:
        logger.exception("cleanup_not_queued project_pk=%s (the next push asks again)", project_pk)


def clean_up(project_pk: int, attempt: int = 0) -> str:
    """Delete the service's older tags once a push has switched the project to a newer one.

    After the switch they no longer count for the sort, so this runs on its own, never
    holding up a push. Label Studio has no bounded way to delete one version's predictions
    and deletes ~125/s in a single request: a request still running after
    CLEANUP_REQUEST_SECONDS is left to finish inside Label Studio and checked again later.
    """
    project = Project.objects.filter(pk=project_pk).first()
    if project is None or not label_studio.is_configured():
        return "nothing to do"
    ls_id = project.ls_project_id
    if ScoringRun.objects.filter(project=project, status__in=ACTIVE).exists():
        # A push is running: a long deletion would hold up its imports. Look again later.
        if attempt < CLEANUP_CHECKS:
            _request_cleanup(project_pk, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1)
        return "after the running push"
    present = label_studio.model_versions(ls_id)
    current = label_studio.get_project(ls_id).get("model_version")
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
        _request_cleanup(project_pk, countdown=CLEANUP_RECHECK_SECONDS, attempt=attempt + 1)
    return f"deleting {pending}" if pending else f"deleted {stale}"


def own_tags(project: Project) -> set[str]:
    """Every model_version the service ever gave this project's predictions."""
    tags = set(ScoringRun.objects.filter(project=project).values_list("tag", flat=True))
    tags |= set(ModelVersion.objects.filter(project=project).values_list("version", flat=True))
    return tags


def queue_view_data(title: str) -> dict[str, Any]:
    """Unlabeled tasks, ascending score: the most informative first."""
    return {
        "title": title,
        "ordering": ["tasks:predictions_score"],
        "filters": {"conjunction": "and", "items": [dict(label_studio.UNLABELED)]},
    }


def ensure_queue_view(ls_project_id: int, title: str) -> dict[str, Any]:
    wanted = queue_view_data(title)
    for view in label_studio.list_views(ls_project_id):
        data = view.get("data") or {}
        if data.get("title") != title:
            continue
        if data.get("ordering") == wanted["ordering"] and _same_filters(data.get("filters"), wanted["filters"]):
            return view
        return label_studio.save_view(ls_project_id, {**data, **wanted}, view_id=view["id"])
    return label_studio.save_view(ls_project_id, wanted)


def _same_filters(have: Any, want: dict[str, Any]) -> bool:
    if not isinstance(have, dict) or have.get("conjunction") != want["conjunction"]:
        return False
    keys = ("filter", "operator", "type", "value")
    return [tuple(i.get(k) for k in keys) for i in have.get("items") or []] == \
        [tuple(i.get(k) for k in keys) for i in want["items"]]


def _drop_unswitched_tag(run: ScoringRun) -> None:
    """A superseded full run's partial predictions never ordered anything: remove them."""
    if run.mode != ScoringRun.Mode.FULL:
        return
    try:
        current = label_studio.get_project(run.project.ls_project_id).get("model_version")
        if current != run.tag:
            label_studio.delete_model_version(run.project.ls_project_id, run.tag)
    except label_studio.LabelStudioError as exc:  # the next full run's clean-up deletes them
        logger.warning("scoring_cleanup_failed run=%s tag=%s error=%s", run.pk, run.tag, exc)


# --- reconciliation --------------------------------------------------------------------------------
def reconcile() -> dict[str, int]:
    """Beat's pass: re-send runs whose message was lost or whose worker died, and resume
    failed pushes of the serving version a few minutes later (Label Studio may be back)."""
    now = timezone.now()
    resent = resumed = 0
    retry_before = now - timedelta(seconds=RESUME_AFTER_SECONDS)
    failed = (ScoringRun.objects.filter(status=ScoringRun.Status.FAILED, finished_at__lt=retry_before,
                                        attempts__lt=MAX_ATTEMPTS, project__serving=F("model_version"))
              .values_list("project_id", flat=True).distinct())
    for project_id in list(failed):
        latest = ScoringRun.objects.filter(project_id=project_id).order_by("-created_at", "-pk").first()
        if latest.status == ScoringRun.Status.FAILED:  # nothing newer took over since
            run = request_scoring(latest.project, trigger="resume", mode=latest.mode)
            resumed += int(run is not None and run.pk == latest.pk)
    stale = now - timedelta(minutes=2)
    for run in ScoringRun.objects.filter(status__in=ACTIVE).select_related("project"):
        lease_until = run.project.scoring_lease_until
        if lease_until is not None and lease_until > now:
            continue
        if run.status == ScoringRun.Status.QUEUED and run.created_at > stale:
            continue
        _enqueue(run)
        resent += 1
    return {"scoring_resent": resent, "scoring_resumed": resumed}
