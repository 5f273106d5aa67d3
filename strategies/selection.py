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


def audit_order(priorities: ArrayLike, ids: ArrayLike, draws: ArrayLike, share: float) -> tuple[np.ndarray, np.ndarray]:
    """The labelling order with an audit sample interleaved, and priorities that sort that way.

    Tasks whose `draws` (uniform, independent of any model: `stable_random`) fall below `share` are
    the audit sample. They take every round(1 / share)-th position, lowest draw first, so the audit
    tasks annotators reach are a uniform sample whatever the model thinks of them; every other task
    keeps its place in `labelling_order`. An audit task's priority lies between its neighbours'
    (so a listing sorted by priority, as Label Studio's by score, keeps the positions). With no
    audit task (share 0) this is `labelling_order` itself.
    """
    priorities = np.asarray(priorities, dtype=np.float64)
    ids, draws = np.asarray(ids), np.asarray(draws, dtype=np.float64)
    audit = draws < share
    if share <= 0 or not audit.any() or audit.all():
        order = labelling_order(priorities, ids)
        return order, priorities[order]
    every = max(2, int(round(1.0 / share)))
    rest = np.flatnonzero(~audit)[labelling_order(priorities[~audit], ids[~audit])]
    sample = np.flatnonzero(audit)[np.lexsort((ids[audit], draws[audit]))]
    r, j = np.arange(len(rest)), np.arange(len(sample))
    keys = np.concatenate([r + r // (every - 1), (j + 1) * every - 1])  # disjoint: audit keys are every-1 mod every
    order = np.concatenate([rest, sample])[np.argsort(keys, kind="stable")]
    placed = priorities[order].copy()
    is_audit = audit[order]
    known = np.flatnonzero(~is_audit)
    positions = np.arange(len(order))
    before = np.searchsorted(known, positions, side="left") - 1  # the last non-audit position before each
    after = np.minimum(before + 1, len(known) - 1)
    previous, following = placed[known[np.maximum(before, 0)]], placed[known[after]]
    head, tail = is_audit & (before < 0), is_audit & (before + 1 >= len(known))
    middle = is_audit & ~head & ~tail
    placed[middle] = (previous[middle] + following[middle]) / 2
    placed[head] = following[head] + 1e-9 * (np.count_nonzero(head) - positions[head])
    placed[tail] = previous[tail] - 1e-9 * (positions[tail] - known[-1])
    return order, placed
