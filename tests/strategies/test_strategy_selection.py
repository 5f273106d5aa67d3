"""Which strategy scores where, the stable random order, and the labelling order with its tie-break."""
from __future__ import annotations

import numpy as np
import pytest

import strategies


@pytest.mark.parametrize("name, multilabel, committee, pool, expected", [
    ("least_confidence", False, 0, False, "least_confidence"),
    ("margin", False, 0, True, "margin"),
    ("least_confidence", True, 0, False, "multilabel_entropy"),  # a single-label measure on a multi-label model
    ("multilabel_margin", False, 0, False, "entropy"),  # and the reverse
    ("multilabel_margin", True, 0, False, "multilabel_margin"),
    ("vote_entropy", False, 5, False, "vote_entropy"),
    ("consensus_entropy", False, 1, False, "entropy"),  # one member is no committee
    ("vote_entropy", False, 0, True, "entropy"),  # a version trained without one
    ("vote_entropy", True, 5, False, "multilabel_entropy"),
    ("ranked_batch", False, 0, True, "ranked_batch"),
    ("ranked_batch", True, 0, True, "ranked_batch"),
    ("ranked_batch", False, 0, False, "entropy"),  # one request's tasks are not the pool
    ("ranked_batch", True, 0, False, "multilabel_entropy"),
    ("random", False, 0, False, "random"),
    ("random", True, 0, True, "random"),
])
def test_applicable_runs_the_named_strategy_only_where_it_means_something(name, multilabel, committee, pool,
                                                                        expected):
    chosen = strategies.applicable(name, multilabel=multilabel, committee_size=committee, whole_pool=pool)
    assert chosen.name == expected


def test_applicable_names_the_known_strategies_for_an_unknown_one():
    with pytest.raises(strategies.UnknownStrategyError, match="least_confidence"):
        strategies.applicable("nope", multilabel=False)


def test_stable_random_gives_each_item_its_number_whatever_the_batch():
    everything = strategies.stable_random(7, [1, 2, 3, 4])
    assert np.array_equal(strategies.stable_random(7, [3, 1]), everything[[2, 0]])
    assert not np.allclose(strategies.stable_random(8, [1, 2, 3, 4]), everything)  # another project, another order
    assert ((0 <= everything) & (everything < 1)).all()
    big = strategies.stable_random("p", range(20_000))
    assert abs(big.mean() - 0.5) < 0.01 and len(np.unique(big)) == 20_000


def test_labelling_order_puts_the_highest_priority_first_and_breaks_ties_by_id():
    priorities = np.array([0.2, 0.9, 0.5, 0.9, 0.2])
    ids = np.array([50, 40, 30, 20, 10])
    order = strategies.labelling_order(priorities, ids)
    assert ids[order].tolist() == [20, 40, 30, 10, 50]
