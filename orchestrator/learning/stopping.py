"""When to stop labelling: the agreement of successive versions on a fixed stop set (stabilizing predictions).

Bloodgood & Vijay-Shanker (CoNLL 2009): keep a fixed sample of unlabeled tasks; after each
version, Cohen's kappa between its predictions on them and the previous version's; suggest
stopping once the mean over the last WINDOW versions reaches THRESHOLD. Bloodgood &
Grothendieck (2015): kappa > T bounds the change of F by 4(1 - T) / T, so 0.99 means ±0.04.

The stop set is drawn once per project, uniformly (a hash of the task id, so a resumed read
draws the same tasks), while a full push reads the pool (scoring/pool.py). Each version
stores its predictions on it, so a kappa never needs an older model loaded.
"""
from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

import strategies
from orchestrator.learning.models import ModelVersion, Project, StopSet

# Tasks in a project's stop set; characters of each text kept (the same text for every version).
STOP_SET_SIZE, STOP_TEXT_CHARS = 2000, 4000
# Suggest stopping when the mean kappa of the last WINDOW versions reaches THRESHOLD.
WINDOW, THRESHOLD = 3, 0.99


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two labelings beyond chance, in [-1, 1]. Identical labelings agree fully (1.0),
    including the degenerate case of one label everywhere, where the textbook formula is 0/0."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    if len(a) != len(b) or len(a) == 0:
        raise ValueError("kappa needs two labelings of the same, non-empty set")
    if np.array_equal(a, b):
        return 1.0
    labels, codes = np.unique(np.concatenate([a, b]), return_inverse=True)
    x, y = codes[: len(a)], codes[len(a):]
    observed = float(np.mean(x == y))
    expected = float(np.dot(np.bincount(x, minlength=len(labels)), np.bincount(y, minlength=len(labels)))) / len(a) ** 2
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def stop_suggested(kappas: Sequence[float | None], *, window: int = WINDOW, threshold: float = THRESHOLD) -> bool:
    """The rule: the last `window` kappas all exist and their mean reaches `threshold`."""
    last = list(kappas)[-window:]
    # (a tolerance for the float mean: three kappas of 0.99 average to 0.98999...)
    return len(last) == window and all(k is not None for k in last) and float(np.mean(last)) >= threshold - 1e-9


@dataclass
class StopSetSampler:
    """Keeps the tasks of a pool that fall in the project's stop set while the pool is read page by page."""

    project: Project
    pool_size: int
    ids: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @classmethod
    def for_pool(cls, project: Project, pool_size: int) -> StopSetSampler | None:
        """A sampler when the project has no stop set yet (None: nothing to do)."""
        if pool_size <= 0 or StopSet.objects.filter(project=project).exists():
            return None
        return cls(project, pool_size)

    def offer(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        share = min(1.0, STOP_SET_SIZE / self.pool_size)
        draws = strategies.stable_random(f"stop-set:{self.project.ls_project_id}", list(ids))
        for task, text, draw in zip(ids, texts, draws):
            if draw < share:
                self.ids.append(int(task))
                self.texts.append(str(text)[:STOP_TEXT_CHARS])

    def save(self) -> StopSet | None:
        if not self.ids:
            return None
        data = zlib.compress(orjson.dumps({"ids": self.ids, "texts": self.texts}))
        stop_set, _ = StopSet.objects.get_or_create(project=self.project,
                                                    defaults={"size": len(self.ids), "data": data})
        return stop_set


def stop_texts(project: Project) -> tuple[int, list[str]] | None:
    """The project's stop set (its pk and texts), or None before one was drawn."""
    row = StopSet.objects.filter(project=project).values_list("pk", "data").first()
    if row is None:
        return None
    return row[0], orjson.loads(zlib.decompress(bytes(row[1])))["texts"]


def stop_ids(project: Project) -> list[int]:
    """The task ids of the project's stop set, in the order of `stop_texts` (empty before one was drawn)."""
    row = StopSet.objects.filter(project=project).values_list("data", flat=True).first()
    return [] if row is None else [int(i) for i in orjson.loads(zlib.decompress(bytes(row)))["ids"]]


def predictions_bytes(labels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(labels), allow_pickle=False)
    return buffer.getvalue()


def predictions_from(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(bytes(data)), allow_pickle=False)


@dataclass(frozen=True)
class Agreement:
    """A new version's stop-set predictions, its kappa to the previous version, and the suggestion."""

    stop_set: int
    predictions: bytes
    kappa: float | None  # None: no earlier version predicted this stop set under this label config
    suggested: bool


def agreement(version: ModelVersion, labels: np.ndarray, stop_set: int, threshold: float = THRESHOLD) -> Agreement:
    """Compare a version's stop-set labels (one per task, or a 0/1 row per task for multi-label) with the
    previous version's on the same stop set and label config, and apply the rule over the history
    (`threshold`: the project's training policy's stop_kappa)."""
    earlier = list(ModelVersion.objects.filter(
        project=version.project, stop_set_id=stop_set, label_config_digest=version.label_config_digest,
        created_at__lt=version.created_at).exclude(pk=version.pk).exclude(stop_predictions=None)
        .order_by("created_at", "pk").values_list("stop_predictions", "stop_kappa"))
    kappa = None
    if earlier:
        previous = predictions_from(earlier[-1][0])
        if previous.shape == np.shape(labels):
            kappa = cohen_kappa(previous, labels)
    history = [k for _, k in earlier] + [kappa]
    return Agreement(stop_set, predictions_bytes(labels), kappa, stop_suggested(history, threshold=threshold))
