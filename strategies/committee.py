"""Query-by-committee disagreement: vote entropy and consensus entropy.
Input: (m members, n items, k classes) class distributions; output in [0, 1], higher = label first."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from strategies._arrays import as_distributions, as_priorities, entropy_nats, unit_entropy


def _committee(committee_probabilities: ArrayLike) -> np.ndarray:
    stack = as_distributions(committee_probabilities, name="committee_probabilities", ndim=3)
    if stack.shape[0] < 2:
        raise ValueError(
            f"a committee needs at least 2 members, got {stack.shape[0]} "
            "(use a single-label strategy for one model)"
        )
    return stack


def _max_vote_entropy(members: int, classes: int) -> float:
    """Entropy of the most even split of ``members`` votes over ``classes`` classes.

    This is log(min(m, k)) whenever m <= k or k divides m; otherwise (e.g. 3 votes
    over 2 classes, best split 2:1) the even split is unreachable and dividing by
    log(min(m, k)) would leave the top of the range empty.
    """
    share, extra = divmod(members, classes)
    counts = np.array([share + 1] * extra + [share] * (classes - extra), dtype=np.float64)
    fractions = counts[counts > 0] / members
    return float(-(fractions * np.log(fractions)).sum())


def vote_entropy(committee_probabilities: ArrayLike) -> np.ndarray:
    """Entropy of the members' hard votes (argmax), divided by its largest reachable value.

    modAL's ``vote_entropy`` computes the same vote distribution but leaves the
    entropy in nats; only the scale differs, so the ordering is the same.
    """
    stack = _committee(committee_probabilities)
    m, n, k = stack.shape
    votes = stack.argmax(axis=2)
    # One-hot the votes and average over members: row i is item i's vote distribution.
    shares = np.zeros((n, k))
    for member_votes in votes:
        shares[np.arange(n), member_votes] += 1.0 / m
    return as_priorities(entropy_nats(shares) / _max_vote_entropy(m, k))


def consensus_entropy(committee_probabilities: ArrayLike) -> np.ndarray:
    """Entropy of the members' mean distribution, divided by log k.

    Unlike vote entropy it sees soft disagreement: members that all lean to the
    same class but only barely still make the item score high.
    """
    return unit_entropy(_committee(committee_probabilities).mean(axis=0))
