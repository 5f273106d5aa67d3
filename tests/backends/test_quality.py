"""The unbiased macro-F1 estimate: it covers the truth at its stated rate, and imputation narrows it."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from backends import quality

pytestmark = pytest.mark.database_independent


def _population(rng: np.random.Generator, n: int):
    """A two-label population (20% positive) and a miscalibrated model's probabilities of it."""
    truth = (rng.random(n) < 0.2).astype(int)
    score = np.clip(0.55 * truth + 0.25 + rng.normal(0, 0.18, n), 0.01, 0.99)  # overconfident, shifted
    return truth, np.column_stack([1 - score, score])


def test_the_interval_covers_the_true_macro_f1_about_nine_times_in_ten_and_the_population_narrows_it():
    rng = np.random.default_rng(0)
    truth, probabilities = _population(rng, 200_000)
    true_f1 = f1_score(truth, probabilities.argmax(1), average="macro")
    covered, widths, plain_widths, errors = 0, [], [], []
    trials = 120
    for trial in range(trials):
        audit = rng.choice(len(truth), 60, replace=False)
        unlabeled = rng.choice(len(truth), 1000, replace=False)
        one_hot = np.eye(2)[truth[audit]]
        found = quality.estimate(one_hot, probabilities[audit], probabilities[unlabeled], seed=trial)
        plain = quality.estimate(one_hot, probabilities[audit], seed=trial)
        covered += found.low <= true_f1 <= found.high
        widths.append(found.high - found.low)
        plain_widths.append(plain.high - plain.low)
        errors.append(found.macro_f1 - true_f1)
        assert (found.audit_labels, found.population, plain.population) == (60, 1000, 0)
    assert 0.82 <= covered / trials <= 0.98, covered
    assert abs(np.mean(errors)) < 0.02  # no bias to speak of, with a miscalibrated model
    assert np.mean(widths) < np.mean(plain_widths)


def test_a_comparison_on_the_same_tasks_is_paired_and_signs_a_real_difference():
    rng = np.random.default_rng(1)
    truth, good = _population(rng, 5000)
    noisy = good.copy()
    flip = rng.random(len(truth)) < 0.25
    noisy[flip] = noisy[flip][:, ::-1]  # a quarter of the answers reversed: a worse model
    audit = rng.choice(len(truth), 150, replace=False)
    unlabeled = rng.choice(len(truth), 1000, replace=False)
    one_hot = np.eye(2)[truth[audit]]
    worse = quality.compare(one_hot, noisy[audit], good[audit], noisy[unlabeled], good[unlabeled])
    assert worse.high < 0 and worse.low <= worse.difference <= worse.high
    same = quality.compare(one_hot, good[audit], good[audit], good[unlabeled], good[unlabeled])
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    assert quality.compare(np.zeros((0, 2)), good[:0], good[:0]) is None
    assert quality.estimate(np.zeros((0, 2)), good[:0]) is None


def test_multi_label_rates_follow_the_half_threshold():
    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probabilities = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.4], [0.1, 0.1]])
    found = quality.estimate(truth, probabilities, multiple=True)
    expected = f1_score(truth, (probabilities >= 0.5).astype(int), average="macro")
    assert abs(found.macro_f1 - expected) < 1e-9
