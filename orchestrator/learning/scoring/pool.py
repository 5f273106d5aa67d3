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
from django.db import transaction

import strategies
from orchestrator.gateways import label_studio
from orchestrator.learning.models import ScoringPool, ScoringRun
from orchestrator.learning.priorities import model_priorities
from orchestrator.learning.scoring.context import RunContext, call_label_studio, check_current, save

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
    run, predictor = ctx.run, ctx.predictor
    batch_aware = strategies.applicable(predictor.strategy, multilabel=predictor.backend.multiple,
                                        whole_pool=True).batch_aware
    ids: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    priorities: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    after = run.high_water
    while True:
        check_current(run)
        tasks = _read_page(ctx, after)
        if not tasks:
            break
        texts = predictor.backend.texts(tasks, text_fetcher())
        page_ids = np.array([int(t["id"]) for t in tasks], dtype=np.int64)
        page = ctx.timer("score", lambda: ctx.model.predict_proba(texts))
        if batch_aware:
            embeddings.append(ctx.timer("score", lambda: ctx.model.embed(texts)))
        else:
            priorities.append(ctx.timer("score", lambda: model_priorities(predictor, page, page_ids.tolist(), texts)))
        ids.append(page_ids)
        probabilities.append(np.asarray(page, dtype=np.float32))
        after = int(page_ids.max())
    if not ids:
        return None
    pool_ids, pool_probabilities = np.concatenate(ids), np.concatenate(probabilities)
    if batch_aware:
        pool_priorities = _rank(ctx, pool_probabilities, np.concatenate(embeddings))
    else:
        pool_priorities = np.concatenate(priorities).astype(np.float64)
    order = strategies.labelling_order(pool_priorities, pool_ids)
    pool = Pool(pool_ids[order], pool_probabilities[order], pool_priorities[order])
    with transaction.atomic():
        ScoringPool.objects.update_or_create(run=run, defaults={"size": len(pool), "data": pool.dumps()})
        save(run, cursor=0, inflight_through=0, high_water=max(run.high_water, int(pool_ids.max())),
             total=run.done + len(pool))
    logger.info("scoring_pool_ready run=%s tasks=%s score_seconds=%.1f", run.pk, len(pool), ctx.timer.get("score"))
    return pool


def _read_page(ctx: RunContext, after_id: int) -> list[dict[str, Any]]:
    run, ls_id = ctx.run, ctx.project.ls_project_id
    tasks, total = ctx.timer("read", lambda: call_label_studio(
        lambda: label_studio.unlabeled_tasks(ls_id, after_id=after_id, limit=READ_PAGE),
        f"listing unlabeled tasks of project {ls_id}"))
    if after_id == run.high_water and run.done + total != run.total:  # the first page: the pool's size
        save(run, total=run.done + total)
    return tasks


def _rank(ctx: RunContext, probabilities: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """A batch-aware strategy's priorities over the whole pool, against recently labeled tasks."""
    labeled = ctx.timer("read", lambda: _labeled_texts(ctx))
    labeled_embeddings = ctx.model.embed(labeled) if labeled else None
    options = dict(ctx.predictor.strategy_params)
    options.setdefault("multilabel", ctx.predictor.backend.multiple)
    return ctx.timer("score", lambda: strategies.priorities(
        ctx.predictor.strategy, probabilities=probabilities.astype(np.float64), features=embeddings,
        labeled_features=labeled_embeddings, **options))


def _labeled_texts(ctx: RunContext) -> list[str]:
    ls_id = ctx.project.ls_project_id
    tasks = call_label_studio(lambda: label_studio.labeled_tasks(ls_id, limit=LABELED_SAMPLE),
                              f"reading labeled tasks of project {ls_id}")
    return ctx.predictor.backend.texts(tasks, text_fetcher())
