"""Strategy registry and the ``priorities`` entry point: lookup, metadata, input checks, dispatch."""

import numpy as np
import pytest

import strategies
from strategies import Strategy, UnknownStrategyError, get, names, priorities, register

ALL = [
    "consensus_entropy",
    "entropy",
    "least_confidence",
    "margin",
    "multilabel_entropy",
    "multilabel_least_confidence",
    "multilabel_margin",
    "random",
    "ranked_batch",
    "vote_entropy",
]

rng = np.random.default_rng(0)
PROBABILITIES = rng.dirichlet(np.ones(3), size=30)
LABEL_PROBABILITIES = rng.random((30, 4))
FEATURES = rng.standard_normal((30, 5))
LABELED = rng.standard_normal((6, 5))
COMMITTEE = rng.dirichlet(np.ones(3), size=(4, 30))

INPUTS = {
    "probabilities": PROBABILITIES,
    "features": FEATURES,
    "labeled_features": LABELED,
    "committee_probabilities": COMMITTEE,
}


def test_names_lists_every_strategy_sorted():
    assert names() == ALL


def test_names_by_kind_includes_strategies_for_any_kind():
    assert names("single_label") == [
        "consensus_entropy", "entropy", "least_confidence", "margin", "random", "ranked_batch",
        "vote_entropy",
    ]
    assert names("multi_label") == [
        "multilabel_entropy", "multilabel_least_confidence", "multilabel_margin", "random", "ranked_batch",
    ]
    assert names("any") == ["random", "ranked_batch"]
    with pytest.raises(ValueError, match="kind"):
        names("regression")


def test_get_returns_metadata():
    batch = get("ranked_batch")
    assert batch.batch_aware and batch.needs == frozenset({"probabilities", "features"})
    assert get("vote_entropy").needs == frozenset({"committee"})
    assert get("random").needs == frozenset()
    assert get("entropy").function is strategies.entropy
    assert all(get(name).description for name in ALL)
    assert [name for name in ALL if get(name).batch_aware] == ["ranked_batch"]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownStrategyError, match="'entorpy'.*consensus_entropy, entropy, least_confidence"):
        get("entorpy")
    assert issubclass(UnknownStrategyError, ValueError)
    with pytest.raises(UnknownStrategyError):
        priorities("nope", probabilities=PROBABILITIES)


def test_strategy_validates_its_metadata_and_names_are_unique():
    with pytest.raises(ValueError, match="kind"):
        Strategy("x", strategies.entropy, "regression", frozenset({"probabilities"}))
    with pytest.raises(ValueError, match="needs"):
        Strategy("x", strategies.entropy, "any", frozenset({"labels"}))
    with pytest.raises(ValueError, match="already registered"):
        register(get("entropy"))


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_returns_unit_priorities_through_the_entry_point(name):
    inputs = dict(INPUTS)
    if get(name).kind == "multi_label":
        inputs["probabilities"] = LABEL_PROBABILITIES
    out = priorities(name, **inputs)
    assert out.shape == (30,) and out.dtype == np.float64
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_dispatch_equals_calling_the_functions_directly():
    np.testing.assert_array_equal(
        priorities("margin", probabilities=PROBABILITIES), strategies.margin(PROBABILITIES)
    )
    np.testing.assert_array_equal(
        priorities("vote_entropy", committee_probabilities=COMMITTEE), strategies.vote_entropy(COMMITTEE)
    )
    np.testing.assert_array_equal(
        priorities("multilabel_margin", probabilities=LABEL_PROBABILITIES),
        strategies.multilabel_margin(LABEL_PROBABILITIES),
    )


def test_ranked_batch_uses_entropy_or_multilabel_entropy():
    np.testing.assert_array_equal(
        priorities("ranked_batch", probabilities=PROBABILITIES, features=FEATURES, labeled_features=LABELED),
        strategies.ranked_batch(strategies.entropy(PROBABILITIES), FEATURES, LABELED),
    )
    np.testing.assert_array_equal(
        priorities(
            "ranked_batch", probabilities=LABEL_PROBABILITIES, features=FEATURES, multilabel=True,
            candidates=10, metric="euclidean",
        ),
        strategies.ranked_batch(
            strategies.multilabel_entropy(LABEL_PROBABILITIES), FEATURES, candidates=10, metric="euclidean"
        ),
    )
    # Without multilabel=True, per-label probabilities are rejected instead of misread.
    with pytest.raises(ValueError, match="multilabel_"):
        priorities("ranked_batch", probabilities=LABEL_PROBABILITIES, features=FEATURES)


def test_random_pool_size_and_seed():
    by_probabilities = priorities("random", probabilities=PROBABILITIES, seed=5)
    np.testing.assert_array_equal(by_probabilities, strategies.random(30, seed=5))
    np.testing.assert_array_equal(priorities("random", features=FEATURES, seed=5), by_probabilities)
    by_committee = priorities("random", committee_probabilities=COMMITTEE, seed=5)
    np.testing.assert_array_equal(by_committee, by_probabilities)
    np.testing.assert_array_equal(priorities("random", n=30, seed=5), by_probabilities)
    assert not np.array_equal(priorities("random", n=30, seed=6), by_probabilities)
    with pytest.raises(ValueError, match="pool size"):
        priorities("random")


@pytest.mark.parametrize(
    "name,given,message",
    [
        ("entropy", {}, "'entropy' needs probabilities"),
        ("multilabel_entropy", {"features": FEATURES}, "'multilabel_entropy' needs probabilities"),
        ("ranked_batch", {"probabilities": PROBABILITIES}, "'ranked_batch' needs features"),
        ("ranked_batch", {}, "'ranked_batch' needs features and probabilities"),
        ("vote_entropy", {"probabilities": PROBABILITIES}, "'vote_entropy' needs committee_probabilities"),
    ],
)
def test_missing_inputs_are_named(name, given, message):
    with pytest.raises(ValueError, match=message):
        priorities(name, **given)


def test_unsupported_options_are_rejected():
    with pytest.raises(ValueError, match="'entropy' was given unsupported options.*candidates"):
        priorities("entropy", probabilities=PROBABILITIES, candidates=5)
    with pytest.raises(ValueError, match="'random' was given unsupported options.*metric"):
        priorities("random", n=3, metric="cosine")
