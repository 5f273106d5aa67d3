"""Train a project's model on annotated examples, track it in MLflow, and serve it.

Synchronous on purpose: Celery tasks and management commands call it; requests never do.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import KFold, StratifiedKFold

import strategies
from backends import Example, TextClassificationBackend, backend_for
from orchestrator.gateways import label_studio, mlflow_registry
from orchestrator.learning.models import ModelVersion, Project
from orchestrator.learning.serving import registry

logger = logging.getLogger(__name__)

MIN_EXAMPLES_FOR_CV = 10


@dataclass
class Dataset:
    """Training examples read from Label Studio, and which annotations (at which revision) made them."""

    examples: list[Example] = field(default_factory=list)
    annotation_ids: list[int] = field(default_factory=list)
    digest: str = ""  # equal digests: same config, same annotations, same revisions


def examples_from_tasks(backend: TextClassificationBackend, tasks: Iterable[Mapping[str, Any]]) -> Dataset:
    """Examples from Label Studio tasks with annotations.

    Rule for several annotations on a task: ground-truth annotations win over the others,
    then the most recently updated one; skips (was_cancelled) and annotations that choose
    nothing the config knows are left out.
    """
    dataset = Dataset()
    revisions: list[str] = []
    fetch = label_studio.fetch_text if label_studio.is_configured() else None
    for task in tasks:
        candidates = [
            a for a in task.get("annotations") or ()
            if not a.get("was_cancelled") and backend.annotation_labels(a.get("result") or ()) is not None
        ]
        if not candidates:
            continue
        best = max(candidates, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or ""), a.get("id") or 0))
        dataset.examples.append(Example(text=backend.task_text(task, fetch), labels=backend.annotation_labels(best["result"])))
        if isinstance(best.get("id"), int):
            dataset.annotation_ids.append(best["id"])
        revisions.append(f"{task.get('id')}:{best.get('id')}:{best.get('updated_at')}")
    hasher = hashlib.sha256(backend.config.digest.encode())
    for revision in sorted(revisions):
        hasher.update(b"\n" + revision.encode())
    dataset.digest = hasher.hexdigest()[:32]
    return dataset


def evaluate(backend: TextClassificationBackend, examples: Sequence[Example],
             folds_out: list | None = None) -> dict[str, float]:
    """Cross-validated metrics (up to 5 folds); empty when there is too little data to hold any out.

    `folds_out`, when given, receives each fold's fitted model (a committee for the
    query-by-committee strategies: members trained on different 80% of the data).
    """
    y = backend.targets(examples)
    texts = np.array([e.text for e in examples], dtype=object)
    metrics: dict[str, float] = {"num_examples": float(len(examples))}
    if backend.multiple:
        for j, label in enumerate(backend.labels):
            metrics[f"count_{label}"] = float(y[:, j].sum())
        folds = min(5, len(examples) // 2)
        if len(examples) < MIN_EXAMPLES_FOR_CV or folds < 2:
            return metrics
        splitter = KFold(n_splits=folds, shuffle=True, random_state=0)
        predicted = np.zeros_like(y)
        for train, test in splitter.split(texts):
            model = backend.fit([examples[i] for i in train])
            if folds_out is not None:
                folds_out.append(model)
            predicted[test] = (model.predict_proba(list(texts[test])) >= 0.5).astype(y.dtype)
        metrics["accuracy"] = float(accuracy_score(y, predicted))  # exact-match ratio
        metrics["macro_f1"] = float(f1_score(y, predicted, average="macro", zero_division=0))
        metrics["micro_f1"] = float(f1_score(y, predicted, average="micro", zero_division=0))
        metrics["cv_folds"] = float(folds)
        return metrics
    labels, counts = np.unique(y, return_counts=True)
    for label, count in zip(labels, counts):
        metrics[f"count_{label}"] = float(count)
    folds = int(min(5, counts.min()))
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
    metrics["accuracy"] = float(accuracy_score(y, predicted))
    metrics["macro_f1"] = float(f1_score(y, predicted, average="macro", zero_division=0))
    metrics["cv_folds"] = float(folds)
    return metrics


def _next_version(project: Project) -> str:
    count = ModelVersion.objects.filter(project=project).count()
    return f"p{project.ls_project_id}-v{count + 1}"


def annotations_digest(annotation_ids: Sequence[int]) -> str:
    return hashlib.sha256(",".join(map(str, sorted(annotation_ids))).encode()).hexdigest()[:16]


class _Clock:
    """Adds the seconds each phase takes to `timings` (when given)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings

    def __call__(self, phase: str, call: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return call()
        finally:
            if self.timings is not None:
                self.timings[phase] = round(self.timings.get(phase, 0.0) + time.perf_counter() - started, 3)


def train_model_version(
    *, project: Project, examples: Sequence[Example], annotation_ids: Sequence[int] = (), data_digest: str = "",
    promote: bool = True, on_created: Callable[[ModelVersion], None] | None = None,
    timings: dict[str, float] | None = None,
) -> ModelVersion:
    """Fit, evaluate, log and register one model version; serve it when `promote`.

    A failure records the version as failed with the error and leaves the serving one alone.
    """
    backend = backend_for(project.label_config)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            project=project, version=_next_version(project), status=ModelVersion.Status.TRAINING,
            label_config_digest=project.label_config_digest, num_annotations=len(examples),
            data_digest=data_digest,
        )
    if on_created is not None:
        on_created(version)
    try:
        backend.check_trainable(examples)  # say what is wrong with the whole set, not with a CV fold
        clock = _Clock(timings)
        # Committee strategies score with the cross-validation folds' models: keep them.
        members: list | None = [] if "committee" in strategies.get(project.strategy).needs else None
        metrics = clock("evaluate", lambda: evaluate(backend, examples, members))
        model = clock("fit", lambda: backend.fit(examples))
        if members:
            model.with_committee(members)
            metrics["committee_size"] = float(len(members))
        registered = clock("mlflow", lambda: mlflow_registry.log_and_register(
            ls_project_id=project.ls_project_id,
            pipeline=model.pipeline,
            params={
                "backend": backend.name, "labels": ",".join(backend.labels), "multi_label": backend.multiple,
                "num_annotations": len(examples), "label_config_digest": project.label_config_digest,
                "annotation_ids_digest": annotations_digest(annotation_ids), "data_digest": data_digest,
                "model_version": version.version,
            },
            metrics=metrics,
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
    version.status = ModelVersion.Status.READY
    version.finished_at = timezone.now()
    version.save()
    registry.put_model(registered.uri, model)
    logger.info("model_trained project=%s version=%s metrics=%s", project.ls_project_id, version.version, metrics)
    if promote:
        promote_version(version=version)
    return version


def promote_version(*, version: ModelVersion) -> None:
    """Make `version` the one its project serves (database and MLflow alias), retiring the previous."""
    project = version.project
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        previous_id = locked.serving_id
        if previous_id and previous_id != version.pk:
            ModelVersion.objects.filter(pk=previous_id).update(status=ModelVersion.Status.RETIRED)
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.SERVING)
        locked.serving = version
        locked.save(update_fields=["serving", "updated_at"])
    version.status = ModelVersion.Status.SERVING
    if version.mlflow_model_name:
        mlflow_registry.set_serving_alias(name=version.mlflow_model_name, version=version.mlflow_model_version)
    registry.forget(project.ls_project_id)
    # Push the new version's scores to Label Studio (queued; never fails the promotion).
    from orchestrator.learning.services import scoring

    try:
        scoring.on_promoted(version)
    except Exception:
        logger.exception("scoring_not_requested project=%s version=%s", project.ls_project_id, version.version)
