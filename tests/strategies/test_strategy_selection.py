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


def test_the_audit_sample_takes_every_kth_position_in_draw_order_and_the_rest_keep_theirs():
    rng = np.random.default_rng(3)
    ids = np.arange(100, 1100)
    priorities = rng.random(1000)
    draws = strategies.stable_random("audit:7", ids.tolist())
    order, placed = strategies.audit_order(priorities, ids, draws, 0.1)
    audit = draws < 0.1
    assert sorted(order.tolist()) == list(range(1000))  # every task once
    in_order = audit[order]
    both = min(int(audit.sum()), int((~audit).sum()) // 9)  # rounds of nine tasks and one audit task
    head = in_order[: 10 * both]
    assert np.flatnonzero(head).tolist() == list(range(9, len(head), 10))  # every 10th position while both last
    assert np.all(np.diff(draws[order][in_order]) > 0)  # audit tasks lowest draw first
    rest = order[~in_order]
    assert rest.tolist() == np.flatnonzero(~audit)[strategies.labelling_order(priorities[~audit], ids[~audit])].tolist()
    assert np.all(np.diff(placed) <= 0)  # sorted by the new priorities, it is the same order
    assert np.array_equal(placed[~in_order], priorities[rest])  # the strategy's own numbers kept


def test_an_audit_sample_at_the_head_or_tail_sorts_where_it_is_placed():
    ids = np.arange(6)
    priorities = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    draws = np.array([0.5, 0.5, 0.01, 0.02, 0.03, 0.04])  # four audit tasks, two others: audit at 1, 3, then the tail
    order, placed = strategies.audit_order(priorities, ids, draws, 0.5)
    assert order.tolist() == [0, 2, 1, 3, 4, 5]
    assert np.all(np.diff(placed) < 0)
    assert strategies.audit_order(priorities, ids, draws, 0.0)[0].tolist() == list(range(6))
