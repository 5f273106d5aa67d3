"""Which strategy can score a given model and pool, stable per-item randomness, and the labelling order.
A project names a strategy; whether it runs depends on the model and the call, and what cannot run falls back."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from strategies.registry import Strategy, get


def fallback(*, multilabel: bool) -> Strategy:
    """Entropy: the uncertainty term the other strategies build on, for the model's label setting."""
    return get("multilabel_entropy" if multilabel else "entropy")


def applicable(name: str, *, multilabel: bool, committee_size: int = 0, whole_pool: bool = False) -> Strategy:
    """The strategy that scores: ``name`` when it can run here, else ``fallback``.

    It runs when it fits the label setting (a single-label measure means nothing on a
    multi-label model, or the reverse) and its inputs exist: a committee of at least two
    members for committee strategies, the whole pool for batch-aware ones (one request's
    tasks are an arbitrary batch). ``random`` needs nothing and fits everything.
    """
    strategy = get(name)
    if not strategy.needs:
        return strategy
    if strategy.kind in ("multi_label" if multilabel else "single_label", "any"):
        if strategy.batch_aware:
            if whole_pool:
                return strategy
        elif strategy.needs == frozenset({"probabilities"}):
            return strategy
        elif strategy.needs == frozenset({"committee"}) and committee_size >= 2:
            return strategy
    return fallback(multilabel=multilabel)


def stable_random(salt: Any, ids: Sequence[Any]) -> np.ndarray:
    """Uniform priorities in [0, 1), one per id, from a hash of ``(salt, id)``.

    The same item gets the same number in every call and every process, so an order built
    on it does not reshuffle between requests (unlike a seeded generator over a batch).
    """
    out = np.empty(len(ids), dtype=np.float64)
    for i, item in enumerate(ids):
        digest = hashlib.blake2b(f"{salt}:{item}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2**64
    return out


def labelling_order(priorities: ArrayLike, ids: ArrayLike) -> np.ndarray:
    """Positions sorted for labelling: highest priority first, ties broken by the lower id."""
    return np.lexsort((np.asarray(ids), -np.asarray(priorities, dtype=np.float64)))
