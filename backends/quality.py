"""An unbiased estimate of a model's macro-F1 on the tasks still to label, with its interval.

Two samples, both drawn uniformly from the project's unlabeled tasks, so neither leans toward the
hard tasks the queue picks (Farquhar et al. 2021; Kossen et al. 2021):

- the **audit** sample: labelled by annotators like any task, held out of every training set;
- the **population** sample: unlabeled (the project's stop set), where the model's own
  probabilities impute what an audit label would say.

Macro-F1 is built from per-label rates (true positives, false positives, false negatives per
task). Each rate is estimated by prediction-powered inference with power tuning (Angelopoulos et
al. 2023, "PPI++"): `lam * mean_population(imputed) + mean_audit(true - lam * imputed)`. The audit
term corrects the imputation's bias, so the estimate is unbiased for any model (calibrated or not);
`lam` (in [0, 1]) weighs the imputation by how well it tracks the audit labels, so a poor
imputation costs nothing (lam = 0 is the plain audit estimate). The 90% interval is a bootstrap over
both samples. A comparison of two models resamples the same tasks for both (paired), so the
interval of their difference is much narrower than either model's own.

Single-label: label c is predicted when it is the argmax; multi-label: when its probability reaches
0.5 (as the backends predict). Pure numpy: the service and the benchmarks call it alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP, LEVEL = 1000, 0.90
TUNE_FROM: int | None = None


@dataclass(frozen=True)
class Estimate:
    """A macro-F1 estimate, its interval, and what it rests on."""

    macro_f1: float
    low: float
    high: float
    audit_labels: int
    population: int  # unlabeled tasks whose imputed rates joined the estimate (0: audit labels alone)

    def as_metrics(self, prefix: str = "audit") -> dict[str, float]:
        return {f"{prefix}_macro_f1": self.macro_f1, f"{prefix}_macro_f1_low": self.low,
                f"{prefix}_macro_f1_high": self.high, f"{prefix}_labels": float(self.audit_labels),
                f"{prefix}_population": float(self.population)}


@dataclass(frozen=True)
class Comparison:
    """`new` minus `old` on the same samples: the difference and its interval."""

    difference: float
    low: float
    high: float
    audit_labels: int


def predicted(probabilities: np.ndarray, multiple: bool) -> np.ndarray:
    """0/1 per task and label: what the model predicts."""
    p = np.asarray(probabilities, dtype=np.float64)
    if multiple:
        return (p >= 0.5).astype(np.float64)
    out = np.zeros_like(p)
    if len(p):
        out[np.arange(len(p)), p.argmax(axis=1)] = 1.0
    return out


def _rates(truth: np.ndarray | None, probabilities: np.ndarray, multiple: bool) -> np.ndarray:
    """Per task: (3, labels) true-positive, false-positive and false-negative indicators; with `truth`
    None, what the probabilities expect them to be (the imputation). Shape (tasks, 3, labels)."""
    p = np.asarray(probabilities, dtype=np.float64)
    chosen = predicted(p, multiple)
    if truth is None:
        tp, fp, fn = chosen * p, chosen * (1.0 - p), (1.0 - chosen) * p
    else:
        t = np.asarray(truth, dtype=np.float64)
        tp, fp, fn = chosen * t, chosen * (1.0 - t), (1.0 - chosen) * t
    return np.stack([tp, fp, fn], axis=1)


def _macro_f1(rates: np.ndarray) -> np.ndarray:
    """Macro-F1 from mean rates (..., 3, labels); labels with no true and no predicted task are left
    out of the mean, as scikit-learn's labels-present rule does."""
    rates = np.clip(rates, 0.0, None)  # a corrected mean rate can dip below zero; no rate is negative
    tp, fp, fn = rates[..., 0, :], rates[..., 1, :], rates[..., 2, :]
    denominator = 2 * tp + fp + fn
    present = denominator > 1e-12
    f1 = np.where(present, 2 * tp / np.where(present, denominator, 1.0), 0.0)
    counted = present.sum(axis=-1)
    return np.where(counted > 0, f1.sum(axis=-1) / np.maximum(counted, 1), 0.0)


def _tuned(audit_true: np.ndarray, audit_imputed: np.ndarray, population_imputed: np.ndarray) -> np.ndarray:
    """PPI++'s weight per rate: cov(true, imputed) / ((1 + n/N) var(imputed)), clipped to [0, 1]."""
    n, big_n = len(audit_true), len(population_imputed)
    if TUNE_FROM is None or n < TUNE_FROM:
        return np.ones(audit_true.shape[1:]) if big_n else np.zeros(audit_true.shape[1:])
    if big_n < 2:
        return np.zeros(audit_true.shape[1:])
    covariance = ((audit_true - audit_true.mean(0)) * (audit_imputed - audit_imputed.mean(0))).sum(0) / (n - 1)
    variance = np.concatenate([audit_imputed, population_imputed]).var(axis=0, ddof=1)
    lam = np.where(variance > 1e-12, covariance / ((1 + n / big_n) * np.where(variance > 1e-12, variance, 1.0)), 0.0)
    return np.clip(lam, 0.0, 1.0)


@dataclass(frozen=True)
class _Samples:
    true: np.ndarray  # (n, 3, labels)
    imputed: np.ndarray  # (n, 3, labels)
    population: np.ndarray  # (N, 3, labels)


def _samples(truth: np.ndarray, audit_probabilities: np.ndarray, population_probabilities: np.ndarray | None,
             multiple: bool) -> _Samples:
    labels = np.asarray(audit_probabilities).shape[1]
    population = (np.zeros((0, 3, labels)) if population_probabilities is None or not len(population_probabilities)
                  else _rates(None, population_probabilities, multiple))
    return _Samples(_rates(truth, audit_probabilities, multiple), _rates(None, audit_probabilities, multiple),
                    population)


def _point(samples: _Samples, lam: np.ndarray, audit_weights: np.ndarray | None = None,
           population_weights: np.ndarray | None = None) -> np.ndarray:
    """The mean rates; with weights (B, n) and (B, N), one row per bootstrap draw."""
    def mean(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            return values.mean(axis=0)
        return np.tensordot(weights, values, axes=(1, 0)) / weights.sum(axis=1)[:, None, None]

    corrected = mean(samples.true - lam * samples.imputed, audit_weights)
    if not len(samples.population):
        return corrected
    return lam * mean(samples.population, population_weights) + corrected


def _draws(size: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights: how often each of `size` items is drawn, BOOTSTRAP rows."""
    if size == 0:
        return np.zeros((BOOTSTRAP, 0))
    return rng.multinomial(size, np.full(size, 1.0 / size), size=BOOTSTRAP).astype(np.float64)


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def estimate(truth: np.ndarray, audit_probabilities: np.ndarray, population_probabilities: np.ndarray | None = None,
             *, multiple: bool = False, seed: int = 0) -> Estimate | None:
    """Macro-F1 of a model on the population the samples come from.

    `truth`: (n, labels) 0/1 per audit task (one 1 per row for single-label); `audit_probabilities`:
    the model's (n, labels) on the same tasks; `population_probabilities`: its (N, labels) on the
    unlabeled sample, or None. None without audit labels (nothing to correct an imputation with).
    """
    truth = np.asarray(truth, dtype=np.float64)
    if len(truth) == 0:
        return None
    samples = _samples(truth, audit_probabilities, population_probabilities, multiple)
    lam = _tuned(samples.true, samples.imputed, samples.population)
    point = float(_macro_f1(_point(samples, lam)))
    rng = np.random.default_rng(seed)
    draws = _macro_f1(_point(samples, lam, _draws(len(truth), rng),
                             _draws(len(samples.population), rng) if len(samples.population) else None))
    low, high = _interval(draws)
    return Estimate(point, min(low, point), max(high, point), len(truth), len(samples.population))


def compare(truth: np.ndarray, new_audit: np.ndarray, old_audit: np.ndarray, new_population: np.ndarray | None = None,
            old_population: np.ndarray | None = None, *, multiple: bool = False, seed: int = 0) -> Comparison | None:
    """Macro-F1 of `new` minus `old` on the same audit labels and unlabeled sample, with its interval
    (both models resampled on the same draws). None without audit labels."""
    truth = np.asarray(truth, dtype=np.float64)
    if len(truth) == 0:
        return None
    new = _samples(truth, new_audit, new_population, multiple)
    old = _samples(truth, old_audit, old_population, multiple)
    lam_new = _tuned(new.true, new.imputed, new.population)
    lam_old = _tuned(old.true, old.imputed, old.population)
    difference = float(_macro_f1(_point(new, lam_new)) - _macro_f1(_point(old, lam_old)))
    rng = np.random.default_rng(seed)
    audit_weights = _draws(len(truth), rng)
    population_weights = _draws(len(new.population), rng) if len(new.population) else None
    draws = (_macro_f1(_point(new, lam_new, audit_weights, population_weights))
             - _macro_f1(_point(old, lam_old, audit_weights, population_weights)))
    low, high = _interval(draws)
    return Comparison(difference, min(low, difference), max(high, difference), len(truth))


def one_hot(labels: list[tuple[str, ...]], names: tuple[str, ...]) -> np.ndarray:
    """(n, len(names)) 0/1: which of `names` each task's labels choose."""
    index = {name: j for j, name in enumerate(names)}
    out = np.zeros((len(labels), len(names)))
    for i, chosen in enumerate(labels):
        for label in chosen:
            if label in index:
                out[i, index[label]] = 1.0
    return out
