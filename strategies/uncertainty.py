"""Single-label uncertainty sampling: least confidence, margin, entropy, and a random baseline.
Each takes an (n, k) matrix of class distributions and returns priorities in [0, 1], higher = label first."""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike

from strategies._arrays import as_distributions, as_priorities, unit_entropy


def _distributions(probabilities: ArrayLike) -> np.ndarray:
    return as_distributions(probabilities, name="probabilities", ndim=2)


def least_confidence(probabilities: ArrayLike) -> np.ndarray:
    """(1 - max_c p_c) * k / (k - 1).

    Raw least confidence tops out at 1 - 1/k (the uniform row); the factor stretches
    that to 1 so scores mean the same thing for 2 classes and for 20.
    modAL's ``classifier_uncertainty`` is the unscaled 1 - max p.
    """
    p = _distributions(probabilities)
    k = p.shape[1]
    return as_priorities((1.0 - p.max(axis=1)) * k / (k - 1))


def margin(probabilities: ArrayLike) -> np.ndarray:
    """1 - (p_top1 - p_top2): a near-tie between the two best classes scores close to 1.

    modAL's ``classifier_margin`` is the raw difference p_top1 - p_top2 (its
    ``margin_sampling`` selects the smallest), so this is 1 minus that.
    """
    p = _distributions(probabilities)
    top_two = -np.partition(-p, 1, axis=1)[:, :2]
    return as_priorities(1.0 - (top_two[:, 0] - top_two[:, 1]))


def entropy(probabilities: ArrayLike) -> np.ndarray:
    """Shannon entropy of each row divided by log k (so the uniform row scores exactly 1).

    modAL's ``classifier_entropy`` is the same entropy in nats, without the division.
    """
    return unit_entropy(_distributions(probabilities))


def random(pool: int | ArrayLike, *, seed: int = 0) -> np.ndarray:
    """Uniform random priorities in [0, 1) for a pool of ``pool`` items (or ``len(pool)``).

    A fixed seed gives the same ordering on every call, so a random baseline is
    reproducible across retrains and workers.
    """
    if isinstance(pool, numbers.Integral) and not isinstance(pool, bool):
        n = int(pool)
        if n < 0:
            raise ValueError(f"pool size must be >= 0, got {n}")
    else:
        shape = np.shape(pool)
        if not shape:
            raise ValueError(f"random needs a pool size or an array of pool items, got {pool!r}")
        n = shape[0]
    return np.random.default_rng(seed).random(n)
