"""Single-label uncertainty strategies: hand-computed values, range, ordering, errors, and modAL parity."""

import math

import numpy as np
import pytest
from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty

from strategies import entropy, least_confidence, margin, random

# k = 3 classes. Rows: uniform, skewed, certain, a two-way tie with a zero class.
P = np.array(
    [
        [1 / 3, 1 / 3, 1 / 3],
        [0.6, 0.3, 0.1],
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.0],
    ]
)


class FakeClassifier:
    """Just enough of an estimator for modAL's classifier_* measures."""

    def __init__(self, probabilities):
        self.probabilities = probabilities

    def predict_proba(self, X):
        return self.probabilities


def random_distributions(n, k, seed=0):
    rng = np.random.default_rng(seed)
    # Dirichlet(0.3) puts plenty of rows near the corners and some near uniform.
    return rng.dirichlet(np.full(k, 0.3), size=n)


def test_least_confidence_hand_computed():
    # (1 - max p) * k / (k - 1) with k = 3:
    # uniform (1 - 1/3) * 3/2 = 1;  skewed (1 - 0.6) * 1.5 = 0.6;  certain 0;  tie (1 - 0.5) * 1.5 = 0.75
    np.testing.assert_allclose(least_confidence(P), [1.0, 0.6, 0.0, 0.75], atol=1e-12)


def test_margin_hand_computed():
    # 1 - (top1 - top2): uniform 1 - 0 = 1;  skewed 1 - (0.6 - 0.3) = 0.7;  certain 1 - 1 = 0;  tie 1 - 0 = 1
    np.testing.assert_allclose(margin(P), [1.0, 0.7, 0.0, 1.0], atol=1e-12)


def test_entropy_hand_computed():
    # H / ln 3. skewed: -(0.6 ln 0.6 + 0.3 ln 0.3 + 0.1 ln 0.1) = 0.30650 + 0.36119 + 0.23026
    # = 0.89795; / 1.09861 = 0.817345.  tie: ln 2 / ln 3 = 0.630930.  certain: 0 (0 ln 0 := 0).
    np.testing.assert_allclose(entropy(P), [1.0, 0.8173454221, 0.0, 0.6309297536], atol=1e-9)


def test_binary_case_all_measures_agree_on_scale():
    # k = 2, p = (0.8, 0.2): LC (1 - 0.8) * 2 = 0.4; margin 1 - 0.6 = 0.4;
    # entropy -(0.8 log2 0.8 + 0.2 log2 0.2) = 0.25754 + 0.46439 = 0.721928
    p = np.array([[0.8, 0.2]])
    assert least_confidence(p)[0] == pytest.approx(0.4)
    assert margin(p)[0] == pytest.approx(0.4)
    assert entropy(p)[0] == pytest.approx(0.7219280949)


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
@pytest.mark.parametrize("k", [2, 3, 10])
def test_range_is_unit_interval_and_reaches_both_ends(measure, k):
    rows = np.vstack([random_distributions(500, k), np.full((1, k), 1 / k), np.eye(k)[:1]])
    scores = measure(rows)
    assert scores.shape == (502,) and scores.dtype == np.float64
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    # The uniform row is maximally uncertain and a one-hot row certain, whatever k is.
    assert scores[-2] == pytest.approx(1.0)
    assert scores[-1] == 0.0


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
def test_more_uncertain_rows_score_higher(measure):
    # Moving mass from the top class to the runner-up makes every measure grow.
    rows = np.array([[1.0 - t, t, 0.0] for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)])
    assert np.all(np.diff(measure(rows)) > 0)


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
def test_empty_pool_gives_empty_priorities(measure):
    out = measure(np.empty((0, 4)))
    assert out.shape == (0,) and out.dtype == np.float64


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
def test_tolerates_float_error_in_row_sums(measure):
    noisy = P.astype(np.float32) * np.float32(1 + 3e-7)
    noisy[2] = [1.0 + 1e-7, -1e-8, 0.0]
    scores = measure(noisy)
    np.testing.assert_allclose(scores, measure(P), atol=1e-5)
    assert scores.min() >= 0.0 and scores.max() <= 1.0


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
def test_rejects_single_class_column(measure):
    with pytest.raises(ValueError, match="k >= 2"):
        measure(np.ones((3, 1)))


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
def test_rejects_nan(measure):
    bad = P.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        measure(bad)


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
def test_rejects_rows_that_are_not_distributions(measure):
    # Independent per-label scores (multi-label) do not sum to 1; the error says what to use.
    with pytest.raises(ValueError, match="row 1 sums to 1.7.*multilabel_"):
        measure(np.array([[0.5, 0.5], [0.9, 0.8]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        measure(np.array([[1.5, -0.5]]))


@pytest.mark.parametrize("measure", [least_confidence, margin, entropy])
def test_rejects_wrong_dimensions(measure):
    with pytest.raises(ValueError, match="2-D"):
        measure(np.array([0.5, 0.5]))


@pytest.mark.parametrize("k", [2, 3, 7])
def test_matches_modal_up_to_normalisation(k):
    rows = random_distributions(200, k, seed=k)
    fake = FakeClassifier(rows)
    X = np.zeros((200, 1))
    # modAL: 1 - max p (unscaled), p_top1 - p_top2 (lower = more uncertain), entropy in nats.
    np.testing.assert_allclose(least_confidence(rows), classifier_uncertainty(fake, X) * k / (k - 1))
    np.testing.assert_allclose(margin(rows), 1.0 - classifier_margin(fake, X))
    np.testing.assert_allclose(entropy(rows), classifier_entropy(fake, X) / math.log(k))
    # Hence the same selection order (stable sorts, so ties would break alike too).
    assert np.array_equal(
        np.argsort(-least_confidence(rows), kind="stable"),
        np.argsort(-classifier_uncertainty(fake, X), kind="stable"),
    )
    assert np.array_equal(
        np.argsort(-margin(rows), kind="stable"),
        np.argsort(classifier_margin(fake, X), kind="stable"),
    )


def test_random_is_deterministic_per_seed_and_in_range():
    first = random(1000, seed=7)
    assert np.array_equal(first, random(1000, seed=7))
    assert not np.array_equal(first, random(1000, seed=8))
    assert first.shape == (1000,) and first.min() >= 0.0 and first.max() <= 1.0
    # All distinct, so the ordering is total.
    assert len(np.unique(first)) == 1000


def test_random_takes_pool_size_from_an_array():
    assert np.array_equal(random(P, seed=3), random(4, seed=3))
    assert random(0).shape == (0,)


@pytest.mark.parametrize("bad", [-1, True, 2.5, "ten"])
def test_random_rejects_bad_pool_sizes(bad):
    with pytest.raises(ValueError):
        random(bad)
