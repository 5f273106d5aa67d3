"""Multi-label uncertainty sampling over independent per-label probabilities.
Input is an (n, L) matrix of P(label j applies to item i); each output is in [0, 1], higher = label first."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from strategies._arrays import as_priorities, as_unit_interval, unit_entropy


def _label_probabilities(probabilities: ArrayLike) -> np.ndarray:
    p = as_unit_interval(probabilities, name="probabilities", ndim=2)
    if p.shape[1] == 0:
        raise ValueError(f"probabilities need at least one label column, got shape {p.shape}")
    return p


def multilabel_least_confidence(probabilities: ArrayLike) -> np.ndarray:
    """Least confidence of the predicted label *set*, scaled to [0, 1].

    Under independence the most likely set switches on exactly the labels with
    p >= 0.5, and has probability prod_j max(p_j, 1 - p_j). Least confidence is one
    minus that; its maximum, reached when every p_j = 0.5, is 1 - 2**-L, which we
    divide by so 1 always means "every label undecided". Unlike ``multilabel_margin``
    this accumulates doubt over all labels: many mildly unsure labels add up, so
    typical values grow with L (scores compare items under one label set, not
    across label sets). With L = 1 it is binary ``least_confidence``.
    """
    p = _label_probabilities(probabilities)
    n_labels = p.shape[1]
    # Summing logs instead of multiplying keeps hundreds of labels from underflowing;
    # expm1 keeps precision when the set probability is close to 1.
    log_confidence = np.log(np.maximum(p, 1.0 - p)).sum(axis=1)
    worst = -np.expm1(n_labels * np.log(0.5))
    return as_priorities(-np.expm1(log_confidence) / worst)


def multilabel_entropy(probabilities: ArrayLike) -> np.ndarray:
    """Mean over labels of the binary entropy H(p_j), in bits (so each label is in [0, 1])."""
    p = _label_probabilities(probabilities)
    # Each label is a two-class distribution (p, 1 - p); entropy over log 2 is in bits.
    per_label = unit_entropy(np.stack([p, 1.0 - p], axis=-1))
    return as_priorities(per_label.mean(axis=1))


def multilabel_margin(probabilities: ArrayLike) -> np.ndarray:
    """1 - min_j |2 p_j - 1|: the binary margin of the single most uncertain label.

    |p - (1 - p)| is the margin between "applies" and "does not apply"; an item is
    as urgent as its most undecided label, however sure the model is about the rest.
    """
    p = _label_probabilities(probabilities)
    return as_priorities(1.0 - np.abs(2.0 * p - 1.0).min(axis=1))
