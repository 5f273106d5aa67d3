"""The stopping suggestion: kappa between successive versions on a fixed stop set, the rule, the learning curve."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from orchestrator.learning import selectors, stopping
from orchestrator.learning.models import ModelVersion, StopSet
from orchestrator.learning.training.fit import train_model_version
from tests.conftest import sms_rows
from tests.factories import examples
from tests.learning.scoring.helpers import score_now


@pytest.mark.parametrize("seed", range(5))
def test_kappa_is_cohens_kappa(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 3, 200))
    assert stopping.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_kappa_edges():
    assert stopping.cohen_kappa(np.zeros(10), np.zeros(10)) == 1.0  # one label everywhere, both agree
    assert stopping.cohen_kappa(np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])) == pytest.approx(-1.0)
    assert stopping.cohen_kappa(np.zeros(4), np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    # Multi-label: each (task, label) decision counts.
    a, b = np.array([[1, 0], [0, 1]]), np.array([[1, 0], [1, 1]])
    assert stopping.cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a.ravel(), b.ravel()))
    with pytest.raises(ValueError):
        stopping.cohen_kappa(np.zeros(3), np.zeros(4))


def test_the_rule_needs_three_kappas_whose_mean_reaches_0_99():
    assert not stopping.stop_suggested([0.995, 0.995])
    assert stopping.stop_suggested([0.5, 0.99, 0.99, 0.99])
    assert stopping.stop_suggested([1.0, 1.0, 0.97])  # mean 0.99
    assert not stopping.stop_suggested([1.0, 1.0, 0.96])
    assert not stopping.stop_suggested([None, 1.0, 1.0])  # the first version has nothing to agree with


def test_the_first_push_draws_a_fixed_stop_set(sms_project, fake_ls, queued_runs):
    score_now(sms_project)  # the cold start's push reads the whole pool
    stop_set = StopSet.objects.get(project=sms_project)
    assert 1900 <= stop_set.size <= 2100  # the pool has 2,500 tasks: each drawn with chance 2000/2500
    _, texts = stopping.stop_texts(sms_project)
    assert len(texts) == stop_set.size and set(texts) <= set(fake_ls.texts.values())
    score_now(sms_project)  # a later full push keeps it
    assert StopSet.objects.get(project=sms_project).pk == stop_set.pk


def test_a_large_pool_draws_about_the_stop_set_size_uniformly(sms_project):
    sampler = stopping.StopSetSampler.for_pool(sms_project, 100_000)
    for start in range(1, 100_001, 2000):
        ids = list(range(start, start + 2000))
        sampler.offer(ids, [f"text {i}" for i in ids])
    assert 1850 <= len(sampler.ids) <= 2150
    assert np.mean(sampler.ids) == pytest.approx(50_000, rel=0.05)  # spread over the pool, not its head
    again = stopping.StopSetSampler.for_pool(sms_project, 100_000)
    again.offer(list(range(1, 100_001)), [""] * 100_000)
    assert again.ids == sampler.ids  # drawn by task id: a re-read draws the same tasks


def test_each_version_records_kappa_to_the_previous_one_and_the_rule_fires_when_they_agree(
        sms_project, fake_ls, queued_runs, monkeypatch):
    score_now(sms_project)
    rows = sms_rows(600)
    v1 = train_model_version(project=sms_project, examples=examples(rows[:40]), promote=False)
    assert v1.stop_kappa is None and not v1.stop_suggested and v1.stop_set is not None
    v2 = train_model_version(project=sms_project, examples=examples(rows[:400]), promote=False)
    assert v2.stop_kappa is not None and -1.0 <= v2.stop_kappa < 1.0  # 40 -> 400 labels changes predictions
    # The same data again: the models agree fully, but the rule wants three kappas.
    v3 = train_model_version(project=sms_project, examples=examples(rows[:400]), promote=False)
    v4 = train_model_version(project=sms_project, examples=examples(rows[:400]), promote=False)
    assert (v3.stop_kappa, v4.stop_kappa) == (1.0, 1.0) and not v3.stop_suggested and not v4.stop_suggested
    v5 = train_model_version(project=sms_project, examples=examples(rows[:400]), promote=False)
    assert v5.stop_suggested  # 1.0, 1.0, 1.0

    # The labels behind the kappa are stored with each version.
    stored = stopping.predictions_from(ModelVersion.objects.get(pk=v2.pk).stop_predictions)
    assert stored.shape == (v2.stop_set.size,) and set(np.unique(stored)) <= {0, 1}

    # In MLflow too.
    from mlflow import MlflowClient
    run = MlflowClient().get_run(v2.mlflow_run_id)
    assert run.data.metrics["stop_set_kappa"] == pytest.approx(v2.stop_kappa)
    assert MlflowClient().get_run(v5.mlflow_run_id).data.metrics["stop_suggested"] == 1.0

    curve = selectors.learning_curve(sms_project)
    assert [p["version"] for p in curve] == [v.version for v in (v1, v2, v3, v4, v5)]
    assert [p["annotations"] for p in curve] == [40, 400, 400, 400, 400]
    assert curve[1]["kappa"] == pytest.approx(v2.stop_kappa) and curve[0]["kappa"] is None
    assert all(p["macro_f1"] is not None and p["strategy"] == sms_project.strategy for p in curve)
    assert [p["stop_suggested"] for p in curve] == [False, False, False, False, True]


def test_without_a_stop_set_a_version_has_no_kappa(trained_sms_project):
    project, version = trained_sms_project
    assert version.stop_set is None and version.stop_kappa is None and not version.stop_suggested


def test_the_training_policy_sets_the_threshold(sms_project, fake_ls, queued_runs):
    from orchestrator.learning.models import TrainingPolicy

    TrainingPolicy.objects.filter(project=sms_project).update(stop_kappa=0.5)
    score_now(sms_project)
    rows = sms_rows(600)
    versions = [train_model_version(project=sms_project, examples=examples(rows[:n]), promote=False)
                for n in (300, 320, 340, 360)]
    kappas = [v.stop_kappa for v in versions]
    assert kappas[0] is None and all(k >= 0.5 for k in kappas[1:]), kappas  # 20 more labels out of 300
    assert [v.stop_suggested for v in versions] == [False, False, False, True]
