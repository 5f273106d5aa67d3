"""Ranked batch-mode sampling (Cardoso et al. 2017): uncertainty traded off against diversity.
Turns per-item uncertainty plus feature vectors into priorities whose descending order is the ranked batch."""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

from strategies._arrays import as_unit_interval

DEFAULT_CANDIDATES = 2000
METRICS = ("cosine", "euclidean")

# Rows of a reference set compared at once; bounds the (candidates x block) distance
# matrix so memory stays linear in the pool however many items are labelled.
_BLOCK = 256


def ranked_batch(
    uncertainty: ArrayLike,
    pool_features: ArrayLike,
    labeled_features: ArrayLike | None = None,
    *,
    candidates: int = DEFAULT_CANDIDATES,
    metric: str = "cosine",
) -> np.ndarray:
    """Priorities in (0, 1] whose descending order is the ranked batch.

    Among the ``candidates`` most uncertain pool items, repeatedly pick
    ``argmax alpha * (1 - s) + (1 - alpha) * uncertainty``, where ``s = 1 / (1 + d)``
    and ``d`` is the distance to the nearest labelled or already picked item, and
    ``alpha = |unlabelled| / (|unlabelled| + |labelled|)`` counts the whole pool with
    picked items moved to the labelled side (as in modAL's
    ``uncertainty_batch_sampling``). Without labelled items the first pick is the
    candidate with the smallest mean distance to the other candidates, as in modAL's
    cold start (which, unlike here, leaves that point in the pool to be picked again).
    Items outside the candidates follow in plain uncertainty order.

    ``uncertainty`` is (n,) in [0, 1]; features are dense (n, d) and (m, d) arrays.
    Each pick costs O(candidates * d), so the whole ranking takes
    O(n log n + candidates * (candidates + labelled) * d) time and
    O(n + candidates * d) memory, never quadratic in n.
    Priority of the item ranked r (0-based) is 1 - r / n: strictly decreasing, so
    sorting by priority descending reproduces the ranking exactly.
    """
    u = as_unit_interval(uncertainty, name="uncertainty", ndim=1)
    pool = _matrix(pool_features, name="pool_features")
    n = u.shape[0]
    if pool.shape[0] != n:
        raise ValueError(
            f"pool_features has {pool.shape[0]} rows but uncertainty has {n} entries"
        )
    labeled = None
    if labeled_features is not None:
        labeled = _matrix(labeled_features, name="labeled_features")
        if labeled.shape[0] and labeled.shape[1] != pool.shape[1]:
            raise ValueError(
                f"labeled_features has {labeled.shape[1]} columns but pool_features has "
                f"{pool.shape[1]}"
            )
        if labeled.shape[0] == 0:
            labeled = None
    if not isinstance(candidates, numbers.Integral) or isinstance(candidates, bool) or candidates < 1:
        raise ValueError(f"candidates must be a positive integer, got {candidates!r}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if n == 0:
        return np.zeros(0)

    by_uncertainty = np.argsort(-u, kind="stable")
    # Pool-index order inside the candidate set makes argmax break ties towards the
    # lowest pool index, exactly like modAL's masked argmax over the whole pool.
    shortlist = np.sort(by_uncertainty[:candidates])
    space = _Space(np.asarray(pool[shortlist], dtype=np.float64), metric)
    picks = _diversity_order(space, u[shortlist], labeled, n_pool=n)
    ranking = np.concatenate([shortlist[picks], by_uncertainty[candidates:]])

    priorities = np.empty(n)
    priorities[ranking] = 1.0 - np.arange(n) / n
    return priorities


def _matrix(values: ArrayLike, *, name: str) -> np.ndarray:
    # No float64 copy of the whole pool: only the shortlist is converted, which is
    # what keeps memory at O(n + candidates * d) for float32 inputs.
    array = np.asarray(values)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"{name} must be a dense 2-D numeric array (n, d), got shape {array.shape} "
            f"and dtype {array.dtype}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


class _Space:
    """Distances from the candidate set to other rows, under one metric."""

    def __init__(self, points: np.ndarray, metric: str) -> None:
        self.cosine = metric == "cosine"
        self.points = _unit_rows(points) if self.cosine else points
        self.squared_norms = (self.points**2).sum(axis=1)

    def distances(self, rows: np.ndarray) -> np.ndarray:
        """(candidates, len(rows)) distances, via one matrix product."""
        rows = np.asarray(rows, dtype=np.float64)
        if self.cosine:
            # Zero rows stay zero, i.e. distance 1 to everything, as in sklearn.
            return np.clip(1.0 - self.points @ _unit_rows(rows).T, 0.0, 2.0)
        squared = (
            self.squared_norms[:, np.newaxis]
            - 2.0 * (self.points @ rows.T)
            + (rows**2).sum(axis=1)[np.newaxis, :]
        )
        return np.sqrt(np.maximum(squared, 0.0))

    def nearest(self, reference: np.ndarray) -> np.ndarray:
        """Distance from each candidate to its nearest row of ``reference``."""
        nearest = np.full(self.points.shape[0], np.inf)
        for start in range(0, reference.shape[0], _BLOCK):
            block = self.distances(reference[start : start + _BLOCK])
            np.minimum(nearest, block.min(axis=1), out=nearest)
        return nearest

    def most_central(self) -> int:
        """Candidate with the smallest mean distance to all candidates."""
        totals = np.zeros(self.points.shape[0])
        for start in range(0, self.points.shape[0], _BLOCK):
            totals += self.distances(self.points[start : start + _BLOCK]).sum(axis=1)
        return int(np.argmin(totals))


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _diversity_order(
    space: _Space, uncertainty: np.ndarray, labeled: np.ndarray | None, *, n_pool: int
) -> np.ndarray:
    """Order in which the ranked batch picks the candidates (indices into them)."""
    count = uncertainty.shape[0]
    if labeled is None:
        picks = [space.most_central()]
        nearest = space.distances(space.points[picks]).ravel()
        n_labeled = 0
    else:
        picks = []
        nearest = space.nearest(labeled)
        n_labeled = labeled.shape[0]

    # Working copies shrink as candidates are picked (see below); ``ids`` maps their
    # rows back to candidate indices, in increasing order so argmax ties still go to
    # the lowest pool index.
    ids = np.arange(count)
    points, squared_norms = space.points, space.squared_norms
    live = np.ones(count, dtype=bool)
    live[picks] = False
    n_live = count - len(picks)

    while n_live:
        # Picked items move from the unlabelled to the labelled side, so alpha drifts
        # from diversity towards uncertainty as the batch grows.
        alpha = (n_pool - len(picks)) / (n_pool + n_labeled)
        scores = alpha * (1.0 - 1.0 / (1.0 + nearest)) + (1.0 - alpha) * uncertainty
        scores[~live] = -np.inf
        row = int(np.argmax(scores))
        picks.append(int(ids[row]))
        live[row] = False
        n_live -= 1

        # einsum, not @: a matrix-vector product per pick is too small to gain from
        # BLAS threads, and on a busy machine their hand-offs made it 10-40x slower.
        dots = np.einsum("ij,j->i", points, points[row])
        if space.cosine:
            step = np.clip(1.0 - dots, 0.0, 2.0)
        else:
            step = np.sqrt(np.maximum(squared_norms - 2.0 * dots + squared_norms[row], 0.0))
        np.minimum(nearest, step, out=nearest)

        # Drop picked rows once a quarter of the working set is dead: later picks then
        # scan only what is left, and the copies add up to a few passes in total.
        if n_live and n_live < 0.75 * ids.shape[0]:
            ids, points, squared_norms = ids[live], points[live], squared_norms[live]
            uncertainty, nearest = uncertainty[live], nearest[live]
            live = np.ones(n_live, dtype=bool)
    return np.array(picks, dtype=np.intp)
