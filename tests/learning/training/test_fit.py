"""How a version is made: it learns from its project's features, and MLflow keeps what it needs to load it."""
from __future__ import annotations

import numpy as np

from orchestrator.gateways import mlflow_store
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.training.fit import train_model_version
from tests.conftest import sms_rows
from tests.factories import examples


def test_a_version_learns_from_its_projects_features_and_reloads_from_mlflow(sms_project):
    assert sms_project.features == "tfidf+glove"  # a new project's default
    version = train_model_version(project=sms_project, examples=examples(sms_rows(200)))
    assert version.features == "tfidf+glove"
    run = mlflow_store._mlflow().MlflowClient().get_run(version.mlflow_run_id)
    assert run.data.params["features"] == "tfidf+glove"
    texts = [text for _, text in sms_rows(300)[200:]]
    trained = model_cache.load(version.model_uri, None)  # the model this process just trained
    model_cache.clear()
    from backends import backend_for

    loaded = backend_for(sms_project.label_config).wrap(mlflow_store.load_pipeline(version.model_uri))
    assert [name for name, _ in loaded.pipeline.steps] == ["features", "clf"] and loaded._compiled is not None
    assert np.allclose(loaded.predict_proba(texts), trained.predict_proba(texts))

    sms_project.features = "tfidf"  # the project changes its features: the next version follows
    sms_project.save()
    second = train_model_version(project=sms_project, examples=examples(sms_rows(200)))
    assert second.features == "tfidf" and mlflow_store._mlflow().MlflowClient().get_run(
        second.mlflow_run_id).data.params["features"] == "tfidf"
    assert [name for name, _ in model_cache.load(second.model_uri, None).pipeline.steps] == ["tfidf", "clf"]
