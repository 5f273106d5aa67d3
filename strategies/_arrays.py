"""Input checks shared by the strategies.
Every public strategy funnels its arrays through here so errors read the same everywhere."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# Classifiers in float32, or rows summed in a different order, miss 1.0 by a few
# ulps; anything further off is a caller bug (e.g. multi-label scores passed to a
# single-label strategy) and must not be silently renormalised away.
SUM_TOLERANCE = 1e-4
RANGE_TOLERANCE = 1e-6


def as_float_array(values: ArrayLike, *, name: str, ndim: int) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def as_unit_interval(values: ArrayLike, *, name: str, ndim: int) -> np.ndarray:
    """Values that must be probabilities (or [0, 1] scores), clipped after a tolerant range check."""
    array = as_float_array(values, name=name, ndim=ndim)
    if array.size and (array.min() < -RANGE_TOLERANCE or array.max() > 1 + RANGE_TOLERANCE):
        raise ValueError(
            f"{name} must lie in [0, 1], got values in [{array.min():g}, {array.max():g}]"
        )
    return np.clip(array, 0.0, 1.0)


def as_distributions(probabilities: ArrayLike, *, name: str, ndim: int) -> np.ndarray:
    """Rows (along the last axis) that are class distributions over k >= 2 classes."""
    array = as_unit_interval(probabilities, name=name, ndim=ndim)
    k = array.shape[-1]
    if k < 2:
        raise ValueError(
            f"{name} has {k} class column(s); single-label strategies need k >= 2 "
            "(pass both columns of a binary classifier)"
        )
    sums = array.sum(axis=-1)
    off = np.abs(sums - 1.0) > SUM_TOLERANCE
    if np.any(off):
        worst = np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape)
        where = f"row {worst[-1]}" if len(worst) == 1 else f"member {worst[0]}, row {worst[1]}"
        raise ValueError(
            f"{name} rows must sum to 1, but {where} sums to "
            f"{sums[worst]:.6g}; for independent per-label probabilities use a "
            "multilabel_* strategy"
        )
    # Renormalise the tiny residue so the measures below see exact distributions.
    return array / sums[..., np.newaxis]


def as_priorities(scores: np.ndarray) -> np.ndarray:
    """Clip rounding overshoot into [0, 1]; adding 0.0 turns -0.0 into 0.0 for clean output."""
    return np.clip(scores, 0.0, 1.0) + 0.0


def entropy_nats(distributions: np.ndarray) -> np.ndarray:
    """Shannon entropy along the last axis, in nats, with 0 * log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(distributions > 0, distributions * np.log(distributions), 0.0)
    return -terms.sum(axis=-1)


def unit_entropy(distributions: np.ndarray) -> np.ndarray:
    """Entropy divided by its maximum log k, so the uniform distribution scores 1."""
    return as_priorities(entropy_nats(distributions) / np.log(distributions.shape[-1]))
