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


def test_above_the_cross_validation_size_a_version_serves_first_and_is_measured_on_a_hold_out(
        sms_project, monkeypatch):
    from orchestrator.learning.training import fit

    monkeypatch.setattr(fit, "CV_UP_TO", 100)
    seen_at_promotion = []
    real_promote = fit.promotion.promote_version
    monkeypatch.setattr(fit.promotion, "promote_version", lambda *, version, request_push: (
        seen_at_promotion.append(dict(version.metrics)), real_promote(version=version, request_push=request_push))[1])
    version = train_model_version(project=sms_project, examples=examples(sms_rows(300)))
    assert "macro_f1" not in seen_at_promotion[0] and seen_at_promotion[0]["num_examples"] == 300
    version.refresh_from_db()
    assert version.status == "serving" and version.metrics["holdout_examples"] == 60  # 20% of 300
    assert 0.8 < version.metrics["macro_f1"] <= 1 and 0.8 < version.metrics["accuracy"] <= 1
    assert "cv_folds" not in version.metrics
    logged = mlflow_store._mlflow().MlflowClient().get_run(version.mlflow_run_id).data.metrics
    assert logged["macro_f1"] == version.metrics["macro_f1"] and logged["holdout_examples"] == 60


def test_a_rule_that_compares_quality_measures_before_serving_even_above_the_size(sms_project, monkeypatch):
    from orchestrator.learning.models import TrainingPolicy
    from orchestrator.learning.training import fit

    monkeypatch.setattr(fit, "CV_UP_TO", 100)
    TrainingPolicy.objects.update_or_create(project=sms_project, defaults={"promotion": "if_not_worse"})
    assert not fit.evaluation_waits(sms_project, 300)
    version = train_model_version(project=sms_project, examples=examples(sms_rows(300)), promote=False)
    assert version.metrics["holdout_examples"] == 60 and "macro_f1" in version.metrics
    sms_project.strategy = "vote_entropy"  # a committee is the cross-validation's models: always before
    TrainingPolicy.objects.filter(project=sms_project).update(promotion="always")
    assert not fit.evaluation_waits(sms_project, 300)
    sms_project.strategy = "margin"
    assert fit.evaluation_waits(sms_project, 300) and not fit.evaluation_waits(sms_project, 100)


def test_a_version_registered_by_mlflows_sklearn_flavour_before_still_loads(sms_project):
    """Versions of deployments older than the service's own format (skops through mlflow.sklearn)."""
    import mlflow.sklearn
    import sklearn

    from backends import artefacts, backend_for

    backend = backend_for(sms_project.label_config, features="tfidf+glove")
    model = backend.fit(examples(sms_rows(100)))
    mlflow = mlflow_store._mlflow()
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model.pipeline, name="model", registered_model_name="legacy-format",
                                        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
                                        skops_trusted_types=["backends.features.MeanWordVectors"])
    uri = f"models:/legacy-format/{info.registered_model_version}"
    texts = [text for _, text in sms_rows(200)[100:]]
    loaded = mlflow_store.load_pipeline(uri)
    assert np.array_equal(backend.wrap(loaded).predict_proba(texts), model.predict_proba(texts))
    version = train_model_version(project=sms_project, examples=examples(sms_rows(100)), promote=False)
    source = mlflow.MlflowClient().get_model_version(version.mlflow_model_name, version.mlflow_model_version).source
    assert source.endswith("/model")  # the registered files are the run's own artefact folder
    files = mlflow.artifacts.download_artifacts(artifact_uri=version.model_uri)
    assert artefacts.is_artefact(files)


def test_a_multi_label_set_a_fold_cannot_learn_from_still_trains_a_version(db):
    """24 choices, every task has all of them but one task lacks "c0": the whole set has a choice both
    present and absent, a cross-validation fold without that task has none. The version trains (no
    cross-validated estimate, said by cv_folds 0) instead of failing the training."""
    from orchestrator.learning.models import ModelVersion
    from orchestrator.learning.projects import setup_project

    choices = [f"c{i}" for i in range(24)]
    config = ('<View><Text name="text" value="$text"/><Choices name="tags" toName="text" choice="multiple">'
              + "".join(f'<Choice value="{c}"/>' for c in choices) + "</Choices></View>")
    project = setup_project(project_key="31.1717171717", label_config=config)
    project.features = "tfidf"
    project.save()
    from backends import Example

    texts = [text for _, text in sms_rows(40)]
    rows = [Example(text=text, labels=tuple(choices[1:] if i == 7 else choices)) for i, text in enumerate(texts)]
    version = train_model_version(project=project, examples=rows)
    assert version.status in (ModelVersion.Status.SERVING, ModelVersion.Status.READY)
    assert version.metrics["cv_folds"] == 0.0 and "macro_f1" not in version.metrics
    assert version.metrics["count_c0"] == 39.0
    probabilities = model_cache.load(version.model_uri, None).predict_proba(texts[:3])
    assert probabilities.shape == (3, 24)


def test_the_stop_suggestion_waits_while_the_audit_sample_says_the_model_still_gets_better(sms_project):
    """Versions that agree on the stop set can still be getting better: when the newest is surely better on the
    audit labels than the one three versions back, its stop suggestion is held back (and says so)."""
    from orchestrator.learning.models import ModelVersion
    from orchestrator.learning.training import fit
    from tests.conftest import SMS_POOL

    rows = sms_rows(700, path=SMS_POOL)
    audit = examples(rows[600:700])
    noisy = [("spam" if label == "ham" and i % 2 == 0 else label, text) for i, (label, text) in enumerate(rows[:40])]
    weak = train_model_version(project=sms_project, examples=examples(noisy), promote=False)
    for _ in range(2):
        train_model_version(project=sms_project, examples=examples(rows[:300]), promote=False)
    better = train_model_version(project=sms_project, examples=examples(rows[:600]), promote=False)
    ModelVersion.objects.filter(pk=better.pk).update(stop_suggested=True)
    better.refresh_from_db()
    fit._hold_stop_while_rising(better, audit)
    better.refresh_from_db()
    assert not better.stop_suggested and better.metrics["stop_held_by_audit"] > 0
    assert weak.version != better.version

    # Three versions back as good as it (the same training set): the suggestion stands.
    again = train_model_version(project=sms_project, examples=examples(rows[:300]), promote=False)
    ModelVersion.objects.filter(pk=again.pk).update(stop_suggested=True)
    again.refresh_from_db()
    fit._hold_stop_while_rising(again, audit)
    again.refresh_from_db()
    assert again.stop_suggested and "stop_held_by_audit" not in again.metrics


def test_the_estimate_imputes_only_on_stop_set_tasks_the_model_did_not_train_on(sms_project):
    """On a task it learned a model is surer than on the tasks the audit stands for: those rows leave the
    imputation (and the dataset says which tasks trained)."""
    import zlib

    import orjson

    from backends import backend_for
    from orchestrator.learning.models import StopSet
    from orchestrator.learning.training import fit
    from orchestrator.learning.training.dataset import examples_from_tasks
    from tests.factories import ls_tasks

    StopSet.objects.create(project=sms_project, size=10, data=zlib.compress(orjson.dumps(
        {"ids": list(range(1, 11)), "texts": [f"text {i}" for i in range(1, 11)]})))
    population = np.arange(20, dtype=float).reshape(10, 2)
    dataset = examples_from_tasks(backend_for(sms_project.label_config), ls_tasks(sms_rows(12)),
                                  audit_of=lambda ids: [i % 4 == 0 for i in ids])
    assert dataset.task_ids == [i for i in range(1, 13) if i % 4] and len(dataset.audit) == 3
    kept = fit.unseen(sms_project, population, dataset.task_ids)
    assert kept.tolist() == population[[3, 7]].tolist()  # tasks 4 and 8: audit tasks, never trained on
    assert fit.unseen(sms_project, population, ()) is population
