"""Scoring a pool: the strategy's priorities from the model the run loads, committee included."""
from __future__ import annotations

import numpy as np
import pytest

import strategies
from backends import backend_for
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.training.fit import train_model_version
from tests.conftest import sms_rows
from tests.factories import examples
from tests.learning.scoring.helpers import score_now


@pytest.mark.parametrize("strategy", ["consensus_entropy", "vote_entropy"])
def test_committee_strategies_score_with_the_fold_models_saved_in_mlflow(sms_project, fake_ls, queued_runs, strategy):
    from backends import backend_for
    from orchestrator.gateways import mlflow_store
    from orchestrator.learning.model_cache import model_cache
    from orchestrator.learning.predictions import predict

    project = sms_project
    project.strategy = strategy
    project.save()
    version = train_model_version(project=project, examples=examples(sms_rows(400)))
    assert version.metrics["committee_size"] == 5
    # A fresh load from MLflow (not this process's cache) brings the committee along.
    backend = backend_for(project.label_config)
    loaded = backend.wrap(mlflow_store.load_pipeline(version.model_uri))
    assert len(loaded.committee) == 5

    run = score_now(project)
    ours = sorted((p for p in fake_ls.predictions if p["model_version"] == run.tag), key=lambda p: p["task"])
    texts = [fake_ls.texts[p["task"]] for p in ours]
    disagreement = strategies.priorities(strategy, committee_probabilities=loaded.committee_proba(texts))
    assert np.allclose([p["score"] for p in ours], 1 - disagreement, atol=1e-6)
    fallback = 1 - strategies.priorities("entropy", probabilities=loaded.predict_proba(texts))
    assert not np.allclose(1 - disagreement, fallback, atol=1e-3)  # not the entropy fallback

    # /predict answers with the same committee scores.
    model_cache.clear()
    predictor = model_cache.predictor(project.ls_project_id)
    answered = predict(predictor=predictor, tasks=[{"id": p["task"], "data": {"text": t}} for p, t in zip(ours[:50], texts)])
    assert np.allclose([a["score"] for a in answered], [p["score"] for p in ours[:50]], atol=1e-6)


def test_a_version_without_a_committee_scores_committee_strategies_with_entropy(trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project  # trained under margin (the default): no committee kept
    project.strategy = "vote_entropy"
    project.save()
    run = score_now(project)
    ours = sorted((p for p in fake_ls.predictions if p["model_version"] == run.tag), key=lambda p: p["task"])
    model = model_cache.load(version.model_uri, backend_for(project.label_config))
    assert model.committee == ()
    probabilities = model.predict_proba([fake_ls.texts[p["task"]] for p in ours])
    assert np.allclose([p["score"] for p in ours], 1 - strategies.priorities("entropy", probabilities=probabilities),
                       atol=1e-6)
