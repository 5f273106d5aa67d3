"""Make one model version: cross-validated metrics, the fit, the MLflow run and its registration.

Synchronous on purpose: Celery tasks and management commands call it; requests never do.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

import strategies
from backends import artefacts, quality
from backends import Example, TextClassificationBackend, TrainingDataError, backend_for
from orchestrator.gateways import mlflow_store
from orchestrator.learning import selectors, stopping
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.models import ModelVersion, Project, TrainingPolicy
from orchestrator.learning.timings import PhaseTimer
from orchestrator.learning.training import promotion

logger = logging.getLogger(__name__)

MIN_EXAMPLES_FOR_CV = 10
# Up to this many examples a version's quality is cross-validated (5 folds); above, one
# stratified hold-out of HOLDOUT_SHARE (at 10k annotations: 2,000 held out, one fit instead of five).
CV_UP_TO, HOLDOUT_SHARE = 2_000, 0.2


def label_counts(backend: TextClassificationBackend, examples: Sequence[Example]) -> dict[str, float]:
    """How many examples, and how many choose each label (what a version learned from)."""
    y = backend.targets(examples)
    metrics: dict[str, float] = {"num_examples": float(len(examples))}
    if backend.multiple:
        for j, label in enumerate(backend.labels):
            metrics[f"count_{label}"] = float(y[:, j].sum())
        return metrics
    labels, counts = np.unique(y, return_counts=True)
    for label, count in zip(labels, counts):
        metrics[f"count_{label}"] = float(count)
    return metrics


def evaluate(backend: TextClassificationBackend, examples: Sequence[Example],
             folds_out: list | None = None) -> dict[str, float]:
    """Label counts and the estimated quality: cross-validated (up to 5 folds) up to CV_UP_TO examples,
    or with `folds_out`; one stratified hold-out above. Only counts when too little data to hold any out.

    `folds_out`, when given, receives each fold's fitted model (a committee for the
    query-by-committee strategies: members trained on different 80% of the data).
    """
    metrics = label_counts(backend, examples)
    if len(examples) > CV_UP_TO and folds_out is None:
        return {**metrics, **_holdout(backend, examples)}
    y = backend.targets(examples)
    texts = np.array([e.text for e in examples], dtype=object)
    if backend.multiple:
        folds = min(5, len(examples) // 2)
        if len(examples) < MIN_EXAMPLES_FOR_CV or folds < 2:
            return metrics
        splitter = KFold(n_splits=folds, shuffle=True, random_state=0)
        predicted = np.zeros_like(y)
        members = []
        for train, test in splitter.split(texts):
            try:
                model = backend.fit([examples[i] for i in train])
            except TrainingDataError as exc:
                # A fold's 80% can lack what the whole set has (no choice both present and absent in it, when
                # one choice is absent from a single task): the version still trains on everything; it just
                # has no cross-validated estimate.
                logger.info("cross_validation_skipped examples=%s reason=%s", len(examples), exc)
                return {**metrics, "cv_folds": 0.0}
            members.append(model)
            predicted[test] = (model.predict_proba(list(texts[test])) >= 0.5).astype(y.dtype)
        if folds_out is not None:
            folds_out.extend(members)
        metrics.update(_scores(backend, y, predicted))
        metrics["cv_folds"] = float(folds)
        return metrics
    folds = int(min(5, np.unique(y, return_counts=True)[1].min()))
    if len(examples) < MIN_EXAMPLES_FOR_CV or folds < 2:
        return metrics
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    predicted = np.empty(len(examples), dtype=object)
    for train, test in splitter.split(texts, y):
        model = backend.fit([examples[i] for i in train])
        if folds_out is not None:
            folds_out.append(model)
        proba = model.predict_proba(list(texts[test]))
        predicted[test] = [backend.labels[i] for i in proba.argmax(axis=1)]
    metrics.update(_scores(backend, y, predicted))
    metrics["cv_folds"] = float(folds)
    return metrics


def _scores(backend: TextClassificationBackend, y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    scores = {"accuracy": float(accuracy_score(y, predicted)),  # multi-label: the exact-match ratio
              "macro_f1": float(f1_score(y, predicted, average="macro", zero_division=0))}
    if backend.multiple:
        scores["micro_f1"] = float(f1_score(y, predicted, average="micro", zero_division=0))
    return scores


def _holdout(backend: TextClassificationBackend, examples: Sequence[Example]) -> dict[str, float]:
    """Accuracy and macro-F1 of a model fitted on 80% and scored on the other 20% (stratified when every
    label has two examples)."""
    y = backend.targets(examples)
    if backend.multiple or np.unique(y, return_counts=True)[1].min() < 2:
        splitter: Any = ShuffleSplit(n_splits=1, test_size=HOLDOUT_SHARE, random_state=0)
    else:
        splitter = StratifiedShuffleSplit(n_splits=1, test_size=HOLDOUT_SHARE, random_state=0)
    train, test = next(splitter.split(np.zeros(len(y)), None if backend.multiple else y))
    try:
        model = backend.fit([examples[i] for i in train])
    except TrainingDataError:  # the 80% alone cannot train (one label in it): no estimate
        return {}
    proba = model.predict_proba([examples[i].text for i in test])
    if backend.multiple:
        predicted = (proba >= 0.5).astype(y.dtype)
    else:
        predicted = np.array([backend.labels[i] for i in proba.argmax(axis=1)], dtype=object)
    return {**_scores(backend, y[test], predicted), "holdout_examples": float(len(test))}


def evaluation_waits(project: Project, num_examples: int) -> bool:
    """Whether a version's quality is measured only after it serves: above CV_UP_TO examples, when
    neither the promotion rule (`if_not_worse` compares it) nor the strategy (a committee is the
    cross-validation's models) needs it first. The version then serves a fit earlier."""
    if num_examples <= CV_UP_TO or "committee" in strategies.get(project.strategy).needs:
        return False
    return selectors.training_policy(project).promotion == TrainingPolicy.Promotion.ALWAYS


def evaluate_served(version: ModelVersion, examples: Sequence[Example], timer: PhaseTimer | None = None) -> None:
    """Measure a version that already serves (see `evaluation_waits`): its metrics, in the database and
    its MLflow run. A failure is logged; the version keeps serving without an estimate."""
    backend = backend_for(version.project.label_config, features=version.features)
    timer = timer or PhaseTimer()
    try:
        measured = timer("evaluate", lambda: _holdout(backend, examples))
    except Exception:
        logger.exception("evaluation_failed project=%s version=%s", version.project.ls_project_id, version.version)
        return
    ModelVersion.objects.filter(pk=version.pk).update(metrics={**version.metrics, **measured})
    version.metrics = {**version.metrics, **measured}
    if measured and version.mlflow_run_id:
        try:
            mlflow_store.log_metrics(run_id=version.mlflow_run_id, metrics=measured)
        except Exception:
            logger.warning("evaluation_not_logged project=%s version=%s", version.project.ls_project_id,
                           version.version, exc_info=True)
    logger.info("model_evaluated project=%s version=%s metrics=%s", version.project.ls_project_id,
                version.version, measured)


def _stop_set_agreement(version: ModelVersion, backend: TextClassificationBackend, model,
                        timer: PhaseTimer) -> tuple[stopping.Agreement | None, np.ndarray | None]:
    """The new version's labels on the project's stop set, compared with the previous version's
    (phase `stop_set`), and its probabilities there; (None, None) before the project has a stop set."""
    found = stopping.stop_texts(version.project)
    if found is None:
        return None, None
    stop_set, texts = found
    probabilities = timer("stop_set", lambda: model.predict_proba(texts))

    def compare() -> stopping.Agreement:
        labels = ((probabilities >= 0.5).astype(np.int8) if backend.multiple
                  else probabilities.argmax(axis=1).astype(np.int16))
        return stopping.agreement(version, labels, stop_set, selectors.training_policy(version.project).stop_kappa)

    return timer("stop_set", compare), probabilities


def unseen(project: Project, population: np.ndarray | None, trained_ids: Collection[int]) -> np.ndarray | None:
    """The rows of stop-set probabilities whose tasks the model did not train on: on a task it learned,
    a model is surer than on the tasks the audit sample stands for, and the imputation would lean."""
    if population is None or not trained_ids:
        return population
    ids = stopping.stop_ids(project)
    if len(ids) != len(population):
        return population
    trained = set(trained_ids)
    keep = np.array([i not in trained for i in ids], dtype=bool)
    return population[keep]


def audit_estimate(backend: TextClassificationBackend, model, audit: Sequence[Example],
                   population: np.ndarray | None) -> dict[str, float]:
    """The unbiased macro-F1 estimate on the audit sample's labels (backends/quality.py), with the
    model's probabilities on the stop set (`population`) when there is one: metrics `audit_*`."""
    if not audit:
        return {}
    truth = quality.one_hot([e.labels for e in audit], backend.labels)
    found = quality.estimate(truth, model.predict_proba([e.text for e in audit]), population,
                             multiple=backend.multiple)
    return found.as_metrics() if found is not None else {}


def _hold_stop_while_rising(version: ModelVersion, audit: Sequence[Example], trained_ids: Collection[int] = ()) -> None:
    """The stopping rule says the versions agree; the audit sample may say the model still gets
    better: when the new version's estimate is surely above the one `stopping.WINDOW` versions back
    (the 90% interval of their paired difference wholly above zero), the suggestion is held back."""
    earlier = list(ModelVersion.objects.filter(
        project=version.project, label_config_digest=version.label_config_digest, created_at__lt=version.created_at,
        status__in=[ModelVersion.Status.READY, ModelVersion.Status.SERVING, ModelVersion.Status.RETIRED],
    ).exclude(pk=version.pk).order_by("-created_at", "-pk").defer("stop_predictions")[:stopping.WINDOW])
    if len(earlier) < stopping.WINDOW:
        return
    comparison = promotion.compare_on_audit(version, earlier[-1], audit, trained_ids)
    if comparison is None or comparison.low <= 0:
        return
    version.stop_suggested = False
    version.metrics = {**version.metrics, "stop_held_by_audit": comparison.difference}
    version.save(update_fields=["stop_suggested", "metrics"])
    logger.info("stop_held project=%s version=%s gain=%.4f since=%s low=%.4f audit_labels=%s",
                version.project.ls_project_id, version.version, comparison.difference, earlier[-1].version,
                comparison.low, comparison.audit_labels)


def _next_version(project: Project) -> str:
    count = ModelVersion.objects.filter(project=project).count()
    return f"p{project.ls_project_id}-v{count + 1}"


def annotations_digest(annotation_ids: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, sorted(annotation_ids))).encode()).hexdigest()[:16]


def train_model_version(
    *, project: Project, examples: Sequence[Example], annotation_ids: Sequence[int] = (), data_digest: str = "",
    promote: bool = True, on_created: Callable[[ModelVersion], None] | None = None,
    timer: PhaseTimer | None = None, audit: Sequence[Example] = (), trained_ids: Collection[int] = (),
) -> ModelVersion:
    """Fit, evaluate, log and register one model version; with `promote`, serve it (and push it).

    `audit`: the audit sample's labels (never trained on): the version's unbiased estimate (`audit_*`);
    `trained_ids`: the tasks of `examples`, whose stop-set probabilities the estimate leaves out.

    Where `evaluation_waits`, the version is registered with its label counts only; with `promote`
    it is measured once it serves, otherwise the caller does (`evaluate_served`) when it wants.

    A failure records the version as failed with the error and leaves the serving one alone.
    `on_created` sees the version row as soon as it exists; `timer` gets the phases' seconds.
    """
    backend = backend_for(project.label_config, features=project.features)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project, version=_next_version(project), status=ModelVersion.Status.TRAINING,
            label_config_digest=project.label_config_digest, num_annotations=len(examples),
            data_digest=data_digest, features=backend.features, strategy=project.strategy,
        )
    if on_created is not None:
        on_created(version)
    timer = timer or PhaseTimer()
    try:
        backend.check_trainable(examples)  # say what is wrong with the whole set, not with a CV fold
        # Committee strategies score with the cross-validation folds' models: keep them.
        members: list | None = [] if "committee" in strategies.get(project.strategy).needs else None
        later = evaluation_waits(project, len(examples))
        metrics = (label_counts(backend, examples) if later
                   else timer("evaluate", lambda: evaluate(backend, examples, members)))
        model = timer("fit", lambda: backend.fit(examples))
        if members:
            model.with_committee(members)
            metrics["committee_size"] = float(len(members))
        agreed, population = _stop_set_agreement(version, backend, model, timer)
        if audit:
            metrics.update(timer("audit", lambda: audit_estimate(
            backend, model, audit, unseen(version.project, population, trained_ids))))
        tracked = dict(metrics)
        if agreed is not None:
            if agreed.kappa is not None:
                tracked["stop_set_kappa"] = agreed.kappa
            tracked["stop_suggested"] = float(agreed.suggested)
        registered = timer("mlflow", lambda: mlflow_store.log_and_register(
            ls_project_id=project.ls_project_id,
            save_model=lambda folder: artefacts.save(model.pipeline, folder),
            params={
                "backend": backend.name, "features": backend.features, "labels": ",".join(backend.labels),
                "multi_label": backend.multiple,
                "num_annotations": len(examples), "label_config_digest": project.label_config_digest,
                "annotation_ids_digest": annotations_digest(annotation_ids), "data_digest": data_digest,
                "model_version": version.version,
            },
            metrics=tracked,
            tags={"label_studio_project": str(project.ls_project_id), "model_version": version.version},
            run_name=version.version,
        ))
    except Exception as exc:
        version.status = ModelVersion.Status.FAILED
        version.error = f"{type(exc).__name__}: {exc}"[:5000]
        version.finished_at = timezone.now()
        version.save(update_fields=["status", "error", "finished_at"])
        logger.warning("training_failed project=%s version=%s error=%s", project.ls_project_id, version.version, exc)
        raise
    version.metrics = metrics
    version.mlflow_run_id = registered.run_id
    version.mlflow_model_name = registered.name
    version.mlflow_model_version = registered.version
    version.model_uri = registered.uri
    if agreed is not None:
        version.stop_set_id, version.stop_predictions = agreed.stop_set, agreed.predictions
        version.stop_kappa, version.stop_suggested = agreed.kappa, agreed.suggested
    version.status = ModelVersion.Status.READY
    version.finished_at = timezone.now()
    version.save()
    model_cache.put_model(registered.uri, model)
    if version.stop_suggested and audit:
        timer("audit", lambda: _hold_stop_while_rising(version, audit, trained_ids))
    logger.info("model_trained project=%s version=%s metrics=%s stop_kappa=%s stop_suggested=%s",
                project.ls_project_id, version.version, metrics, version.stop_kappa, version.stop_suggested)
    if promote:
        promotion.promote_version(version=version, request_push=True)
        if later:
            evaluate_served(version, examples, timer)
    return version
