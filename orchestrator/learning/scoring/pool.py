"""A run's pool: the unlabeled tasks read page by page, scored, and stored most informative first.

Only ids, probabilities and priorities are kept (about 24 bytes a task for two labels;
batch-aware strategies add 64 floats a task until the pool is ranked); each page's texts are
dropped once predicted. The stored pool (`ScoringPool`) is what a resumed run pushes from.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

import strategies
from backends import features
from orchestrator.gateways import label_studio
from orchestrator.learning import audit, task_mirror
from orchestrator.learning.models import ColdStart, ScoringPool, ScoringRun
from orchestrator.learning.priorities import model_priorities, stable_random_priorities
from orchestrator.learning.scoring.context import RunContext, check_current, save
from orchestrator.learning.stopping import StopSetSampler
from strategies.cold_start import ColdStartOrder, fit_cold_start

logger = logging.getLogger(__name__)

# Unlabeled tasks read per request while scoring a pool.
READ_PAGE = 2000
# Labeled tasks read (most recent first) as the "already labeled" side of a batch-aware strategy.
LABELED_SAMPLE = 2000


@dataclass
class Pool:
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
    def loads(cls, data: bytes) -> Pool:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as arrays:
            return cls(arrays["ids"], arrays["probabilities"], arrays["priorities"])


def stored_pool(run: ScoringRun) -> Pool | None:
    data = ScoringPool.objects.filter(run=run).values_list("data", flat=True).first()
    return None if data is None else Pool.loads(data)


def text_fetcher():
    """How texts behind URLs are read (through the configured Label Studio only)."""
    return label_studio.fetch_text if label_studio.is_configured() else None


def score_pool(ctx: RunContext) -> Pool | None:
    """Score every unlabeled task above the run's `high_water` and store them most informative first.

    None when there is no such task. Batch-aware strategies rank the whole pool, so a score
    reflects the rank.
    """
    predictor = ctx.predictor
    if ctx.model is None:
        return _cold_start_pool(ctx)
    batch_aware = strategies.applicable(predictor.strategy, multilabel=predictor.backend.multiple,
                                        whole_pool=True).batch_aware
    ids: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    priorities: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    for page_ids, texts in _pages(ctx):
        page = ctx.timer("score", lambda: ctx.model.predict_proba(texts))
        if batch_aware:
            embeddings.append(ctx.timer("score", lambda: ctx.model.embed(texts)))
        else:
            priorities.append(ctx.timer("score", lambda: model_priorities(predictor, page, page_ids.tolist(), texts)))
        ids.append(page_ids)
        probabilities.append(np.asarray(page, dtype=np.float32))
    if not ids:
        return None
    pool_ids, pool_probabilities = np.concatenate(ids), np.concatenate(probabilities)
    if batch_aware:
        pool_priorities = _rank(ctx, pool_probabilities, np.concatenate(embeddings))
    else:
        pool_priorities = np.concatenate(priorities).astype(np.float64)
    return _store(ctx, pool_ids, pool_probabilities, pool_priorities)


def _store(ctx: RunContext, pool_ids: np.ndarray, pool_probabilities: np.ndarray,
           pool_priorities: np.ndarray) -> Pool:
    """The scored pool in push order (the audit sample at its positions), stored with the run (what a
    resumed run pushes from)."""
    run = ctx.run
    order, placed = audit.queue_order(ctx.project.ls_project_id, pool_priorities, pool_ids)
    pool = Pool(pool_ids[order], pool_probabilities[order], placed)
    with transaction.atomic():
        ScoringPool.objects.update_or_create(run=run, defaults={"size": len(pool), "data": pool.dumps()})
        save(run, cursor=0, inflight_through=0, high_water=max(run.high_water, int(pool_ids.max())),
             total=run.done + len(pool))
    logger.info("scoring_pool_ready run=%s tasks=%s score_seconds=%.1f", run.pk, len(pool), ctx.timer.get("score"))
    return pool


def _cold_start_pool(ctx: RunContext) -> Pool | None:
    """Before any model: every unlabeled task placed by the cold start's order (no result, a score).

    A full run's first pool fits the order to the whole pool and stores it (so /predict
    places tasks alike); the pools after it, and incremental runs, place tasks by the stored one.
    Each task keeps only its text vector (50 float32) until the pool is placed.
    """
    ids: list[np.ndarray] = []
    vectors: list[np.ndarray] = []
    for page_ids, texts in _pages(ctx):
        vectors.append(ctx.timer("score", lambda: features.cold_start_vectors(texts)))
        ids.append(page_ids)
    if not ids:
        return None
    pool_ids, pool_vectors = np.concatenate(ids), np.concatenate(vectors)
    order = ctx.timer("score", lambda: _cold_start_order(ctx, pool_vectors))
    if order is not None:
        pool_priorities = _one_per_place(order, pool_vectors)
    else:  # no text has a known word: a stable random order, as /predict answers then
        pool_priorities = stable_random_priorities(ctx.project.ls_project_id, pool_ids.tolist())
    return _store(ctx, pool_ids, np.zeros((len(pool_ids), 0), dtype=np.float32), pool_priorities)


def _pages(ctx: RunContext):
    """The run's unlabeled tasks above its `high_water`, page by page: (ids, texts).

    The tasks come from the project's task mirror, brought up to Label Studio first (only what
    changed since the last push is asked for); which are labeled is asked of Label Studio (ids only).
    A full run's first pool also draws the project's stop set, if it has none (stopping.py),
    and stores it once the last page was read.
    """
    run, backend, project = ctx.run, ctx.predictor.backend, ctx.project
    check_current(run)
    ctx.timer("mirror", lambda: task_mirror.sync(project))  # Label Studio's calls (several); the rest reads our database
    if ctx.labeled is None:  # once per execution: the look for tasks created meanwhile reuses it
        ctx.labeled = ctx.timer("mirror", lambda: task_mirror.labeled_ids(project))
    labeled = ctx.labeled
    pool_ids = ctx.timer("read", lambda: task_mirror.unlabeled_ids(project, after_id=run.high_water, labeled=labeled))
    if run.done + len(pool_ids) != run.total:
        save(run, total=run.done + len(pool_ids))
    sampler = None
    if run.mode == ScoringRun.Mode.FULL and run.done == 0 and len(pool_ids):
        sampler = StopSetSampler.for_pool(ctx.project, run.total - run.done)
    for start in range(0, len(pool_ids), READ_PAGE):
        check_current(run)
        tasks = ctx.timer("read", lambda: task_mirror.tasks_of(project, pool_ids[start:start + READ_PAGE]))
        if not tasks:
            continue
        texts = backend.texts(tasks, text_fetcher(), threads=settings.URL_FETCH_THREADS)
        page_ids = np.array([int(t["id"]) for t in tasks], dtype=np.int64)
        if sampler is not None:
            sampler.offer(page_ids.tolist(), texts)
        yield page_ids, texts
    stop_set = sampler.save() if sampler is not None else None
    if stop_set is not None:
        logger.info("stop_set_drawn project=%s tasks=%s", ctx.project.ls_project_id, stop_set.size)


def _one_per_place(order: ColdStartOrder, vectors: np.ndarray) -> np.ndarray:
    """The order's priorities, with tasks that would repeat another's place moved after every
    other task (in their order): a text with the same words as an earlier task (it teaches
    nothing the first does not), and a second task exactly at a cluster's centre distance (a
    cluster of two, say), so the head is one task per cluster. A /predict of such a task, seen
    alone, scores like the task it repeats."""
    cluster, place = order.place(vectors)
    priorities = 1.0 - order.scores_at(vectors, cluster, place)
    _, first, which = np.unique(vectors, axis=0, return_index=True, return_inverse=True)
    repeat = np.arange(len(vectors)) != first[which.ravel()]
    at_centre = np.flatnonzero((place == 0.0) & ~repeat)
    _, first_at_centre = np.unique(cluster[at_centre], return_index=True)
    repeat[np.setdiff1d(at_centre, at_centre[first_at_centre])] = True
    priorities[repeat] *= 1e-3
    return priorities


def _cold_start_order(ctx: RunContext, vectors: np.ndarray) -> ColdStartOrder | None:
    project, run = ctx.project, ctx.run
    stored = ColdStart.objects.filter(project=project).values_list("data", flat=True).first()
    if stored is not None and not (run.mode == ScoringRun.Mode.FULL and run.high_water == 0):
        return ColdStartOrder.loads(stored)
    order = fit_cold_start(vectors, seed=project.ls_project_id)
    if order is None:
        ColdStart.objects.filter(project=project).delete()
        return None
    ColdStart.objects.update_or_create(project=project, defaults={
        "vectors": features.COLD_START_VECTORS, "clusters": len(order.centres), "num_tasks": len(vectors),
        "data": order.dumps()})
    logger.info("cold_start_fitted project=%s tasks=%s clusters=%s", project.ls_project_id, len(vectors),
                len(order.centres))
    return order


def _rank(ctx: RunContext, probabilities: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """A batch-aware strategy's priorities over the whole pool, against recently labeled tasks."""
    labeled = ctx.timer("mirror", lambda: _labeled_texts(ctx))
    labeled_embeddings = ctx.model.embed(labeled) if labeled else None
    options = dict(ctx.predictor.strategy_params)
    options.setdefault("multilabel", ctx.predictor.backend.multiple)
    return ctx.timer("score", lambda: strategies.priorities(
        ctx.predictor.strategy, probabilities=probabilities.astype(np.float64), features=embeddings,
        labeled_features=labeled_embeddings, **options))


def _labeled_texts(ctx: RunContext) -> list[str]:
    """The texts of the most recently created labeled tasks (up to LABELED_SAMPLE), from the task mirror."""
    labeled = (ctx.labeled if ctx.labeled is not None else task_mirror.labeled_ids(ctx.project))[-LABELED_SAMPLE:]
    tasks = task_mirror.tasks_of(ctx.project, labeled)
    return ctx.predictor.backend.texts(tasks, text_fetcher(), threads=settings.URL_FETCH_THREADS)
