"""Multi-label strategies over independent per-label probabilities: hand values, range, ordering, errors."""

import numpy as np
import pytest

from strategies import (
    entropy,
    least_confidence,
    multilabel_entropy,
    multilabel_least_confidence,
    multilabel_margin,
)

MEASURES = [multilabel_least_confidence, multilabel_entropy, multilabel_margin]

# L = 2 labels. Rows: both undecided, fairly sure of both, certain.
P = np.array([[0.5, 0.5], [0.9, 0.2], [1.0, 0.0]])


def test_least_confidence_hand_computed():
    # Most likely label set has probability prod_j max(p_j, 1 - p_j); scale by 1 - 2**-L = 0.75.
    # row 0: 1 - 0.5 * 0.5 = 0.75 -> 1.   row 1: 1 - 0.9 * 0.8 = 0.28 -> 0.28 / 0.75 = 0.373333.
    np.testing.assert_allclose(multilabel_least_confidence(P), [1.0, 0.28 / 0.75, 0.0], atol=1e-12)


def test_entropy_hand_computed():
    # Mean binary entropy in bits. row 1: H(0.9) = 0.468996, H(0.2) = 0.721928, mean 0.595462.
    np.testing.assert_allclose(multilabel_entropy(P), [1.0, 0.5954618442, 0.0], atol=1e-9)


def test_margin_hand_computed():
    # 1 - min_j |2 p_j - 1|. row 1: |0.8| = 0.8, |-0.6| = 0.6 -> 1 - 0.6 = 0.4.
    np.testing.assert_allclose(multilabel_margin(P), [1.0, 0.4, 0.0], atol=1e-12)


def test_margin_looks_at_the_worst_label_least_confidence_at_all_of_them():
    # Row 0: one undecided label, nine certain ones. Row 1: ten mildly unsure labels.
    one_undecided = np.array([[0.5] + [1.0] * 9])
    many_mild = np.full((1, 10), 0.8)
    rows = np.vstack([one_undecided, many_mild])
    margin = multilabel_margin(rows)
    assert margin[0] == 1.0 and margin[1] == pytest.approx(0.4)  # 1 - |1.6 - 1|
    # Row 0 set probability 0.5 -> (1 - 0.5) / (1 - 2**-10) = 0.500489;
    # row 1 0.8**10 = 0.107374 -> 0.892626 / 0.999023 = 0.893499.
    np.testing.assert_allclose(
        multilabel_least_confidence(rows),
        [0.5 / (1 - 2**-10), (1 - 0.8**10) / (1 - 2**-10)],
    )


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("n_labels", [1, 3, 40])
def test_range_is_unit_interval_and_reaches_both_ends(measure, n_labels):
    rng = np.random.default_rng(n_labels)
    rows = np.vstack([rng.random((300, n_labels)), np.full((1, n_labels), 0.5), np.zeros((1, n_labels))])
    scores = measure(rows)
    assert scores.shape == (302,) and scores.dtype == np.float64
    assert scores.min() >= 0.0 and scores.max() <= 1.0
    assert scores[-2] == pytest.approx(1.0)
    assert scores[-1] == 0.0


@pytest.mark.parametrize("measure", MEASURES)
def test_closer_to_one_half_scores_higher(measure):
    rows = np.array([[p, 1.0] for p in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)])
    assert np.all(np.diff(measure(rows)) > 0)
    # Symmetric in presence / absence of a label.
    np.testing.assert_allclose(measure(np.array([[0.3, 0.9]])), measure(np.array([[0.7, 0.1]])))


def test_single_label_column_is_the_binary_case():
    # One label with P(present) = p is the two-class distribution (p, 1 - p).
    p = np.array([0.0, 0.2, 0.5, 0.7, 1.0])
    binary = np.column_stack([p, 1 - p])
    column = p[:, np.newaxis]
    np.testing.assert_allclose(multilabel_entropy(column), entropy(binary))
    np.testing.assert_allclose(multilabel_least_confidence(column), least_confidence(binary))
    np.testing.assert_allclose(multilabel_margin(column), least_confidence(binary))


def test_many_labels_do_not_underflow():
    # 0.5**2000 underflows to 0 if multiplied; every label undecided must still score exactly 1.
    assert multilabel_least_confidence(np.full((1, 2000), 0.5))[0] == pytest.approx(1.0)
    assert multilabel_least_confidence(np.full((1, 2000), 1.0))[0] == 0.0


@pytest.mark.parametrize("measure", MEASURES)
def test_empty_pool_and_float_noise(measure):
    assert measure(np.empty((0, 3))).shape == (0,)
    scores = measure(np.array([[1.0 + 1e-9, -1e-9]]))
    assert scores[0] == 0.0


@pytest.mark.parametrize("measure", MEASURES)
def test_errors(measure):
    with pytest.raises(ValueError, match="NaN"):
        measure(np.array([[0.5, np.nan]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        measure(np.array([[0.5, 1.2]]))
    with pytest.raises(ValueError, match="at least one label"):
        measure(np.empty((3, 0)))
    with pytest.raises(ValueError, match="2-D"):
        measure(np.array([0.5, 0.5]))
