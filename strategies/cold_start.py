"""The order to label in before any model: representative tasks first, one per cluster of the pool.

k-means on frozen text vectors (ALPS, Yuan et al. 2020; TypiClust, Hacohen et al. 2022: at
a low budget the typical points of uncovered clusters teach most). Each task's place is
its distance to its cluster's centre, as a fraction of that cluster's members (0: the
member nearest the centre). So the first tasks are the centre of every cluster, largest
cluster first; after them each cluster gives tasks in proportion to its size.

A fitted order is small (centres and per-cluster distance quantiles) and places any task,
including one that was not in the pool it was fitted on: a push and a /predict of the same
text get the same score. Texts without a vector (no known word) go last.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Clusters of a cold start: the first this many tasks are each one's most central member.
CLUSTERS = 20
# Tasks k-means is fitted on (a uniform sample of the pool above this); every task is placed.
FIT_SAMPLE = 20_000
# Points of each cluster's distance distribution kept to place a task within it.
QUANTILES = 101
# Share of the score that orders clusters among tasks at the same place (the centres).
CLUSTER_TIE = 1e-3


@dataclass(frozen=True)
class ColdStartOrder:
    """Fitted cluster centres, each cluster's distance quantiles, and the clusters' order (largest first)."""

    centres: np.ndarray  # (k, d) float64, unit length
    quantiles: np.ndarray  # (k, QUANTILES) float64, ascending distances of members to their centre
    cluster_rank: np.ndarray  # (k,) int64: 0 for the largest cluster

    def place(self, vectors: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Each vector's cluster and its place in it (0: as central as the most central member, 1: the edge)."""
        x = np.asarray(vectors, dtype=np.float64)
        if len(x) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        distances = _distances(_unit(x), self.centres)
        cluster = distances.argmin(axis=1)
        own = distances[np.arange(len(x)), cluster]
        place = np.empty(len(x))
        for c in np.unique(cluster):
            members = cluster == c
            place[members] = _fraction_below(self.quantiles[c], own[members])
        return cluster, place

    def scores(self, vectors: ArrayLike) -> np.ndarray:
        """Label Studio's ascending score in [0, 1]: the place, ties between clusters broken by size.

        A vector of zeros (a text without a known word) scores 1, after every other task.
        """
        cluster, place = self.place(vectors)
        return self.scores_at(vectors, cluster, place)

    def scores_at(self, vectors: ArrayLike, cluster: np.ndarray, place: np.ndarray) -> np.ndarray:
        """`scores`, given what `place` answered for the same vectors (so a caller needing both places once)."""
        x = np.asarray(vectors, dtype=np.float64)
        k = len(self.centres)
        score = (1.0 - CLUSTER_TIE) * place + CLUSTER_TIE * self.cluster_rank[cluster] / max(k, 1)
        if len(x):
            score[~np.any(x != 0.0, axis=1)] = 1.0
        return np.clip(score, 0.0, 1.0)

    def priorities(self, vectors: ArrayLike) -> np.ndarray:
        """Higher first, as strategies' priorities are: 1 - score."""
        return 1.0 - self.scores(vectors)

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, centres=self.centres, quantiles=self.quantiles, cluster_rank=self.cluster_rank)
        return buffer.getvalue()

    @classmethod
    def loads(cls, data: bytes) -> ColdStartOrder:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as arrays:
            return cls(arrays["centres"], arrays["quantiles"], arrays["cluster_rank"])


def fit_cold_start(vectors: ArrayLike, *, clusters: int = CLUSTERS, seed: int = 0,
                   sample: int = FIT_SAMPLE) -> ColdStartOrder | None:
    """k-means over the pool's vectors (rows of zeros left out); None when no row has a vector."""
    from sklearn.cluster import KMeans

    x = np.asarray(vectors, dtype=np.float64)
    known = np.flatnonzero(np.any(x != 0.0, axis=1)) if len(x) else np.zeros(0, dtype=np.int64)
    if len(known) == 0:
        return None
    points = _unit(x[known])
    rng = np.random.default_rng(seed)
    fit_on = points if len(points) <= sample else points[rng.choice(len(points), size=sample, replace=False)]
    k = int(min(clusters, len(np.unique(fit_on.round(6), axis=0))))
    model = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(fit_on)
    centres = _unit(model.cluster_centers_)
    # Placed by cosine to unit centres, a centre may end up with no member: drop it.
    centres = centres[np.unique(_distances(points, centres).argmin(axis=1))]
    k = len(centres)
    distances = _distances(points, centres)
    cluster = distances.argmin(axis=1)
    own = distances[np.arange(len(points)), cluster]
    sizes = np.bincount(cluster, minlength=k)
    steps = np.linspace(0.0, 1.0, QUANTILES)
    quantiles = np.array([np.quantile(own[cluster == c], steps) for c in range(k)])
    rank = np.empty(k, dtype=np.int64)
    rank[np.lexsort((np.arange(k), -sizes))] = np.arange(k)
    return ColdStartOrder(centres, quantiles, rank)


def _fraction_below(quantiles: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each value falls among ascending quantiles, in [0, 1]; a value equal to several
    quantiles takes the lowest place (so a cluster whose members all coincide places them at 0)."""
    last = len(quantiles) - 1
    above = np.searchsorted(quantiles, values, side="left")  # first quantile >= value
    inner = (above > 0) & (above <= last)
    place = np.where(above > last, 1.0, 0.0)
    low, high = quantiles[above[inner] - 1], quantiles[above[inner]]
    place[inner] = (above[inner] - 1 + (values[inner] - low) / (high - low)) / last
    return place


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _distances(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Cosine distances (both sides unit length), (n, k)."""
    return np.clip(1.0 - x @ centres.T, 0.0, 2.0)
