"""The only gateway to MLflow: runs, the model registry, aliases, and loading models.

MLflow is imported lazily (it takes 1-2 s), so web processes that never train or load
a model, and the /health path, never pay for it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from backends import artefacts

logger = logging.getLogger(__name__)

SERVING_ALIAS = "champion"
# A run's artifact folder holding its model's files.
MODEL_ARTIFACT = "model"
_configure_lock = threading.Lock()


@dataclass(frozen=True)
class RegisteredModel:
    run_id: str
    name: str
    version: str
    uri: str


def registered_model_name(ls_project_id: int) -> str:
    return f"label-studio-project-{ls_project_id}"


@lru_cache(maxsize=1)
def _mlflow():
    with _configure_lock:
        import mlflow

        uri = settings.MLFLOW_TRACKING_URI
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        if uri.startswith("sqlite:///"):
            _create_sqlite_store(mlflow, Path(uri.removeprefix("sqlite:///")))
        return mlflow


def _create_sqlite_store(mlflow: Any, path: Path) -> None:
    """Create (migrate) a local SQLite store under a file lock.

    Web workers and Celery workers start together; MLflow's schema migrations racing on
    one new SQLite file leave it broken ("table _alembic_tmp_... already exists").
    """
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = mlflow.MlflowClient()
            client.search_experiments(max_results=1)  # tracking store: creates and migrates the tables
            client.search_registered_models(max_results=1)  # registry store on the same file
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _experiment_id(client: Any, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifact_location = None
    if not settings.MLFLOW_TRACKING_URI.startswith(("http://", "https://")):
        # A file store needs an explicit place, or MLflow writes ./mlruns under the cwd.
        root = Path(settings.MLFLOW_ARTIFACT_ROOT)
        root.mkdir(parents=True, exist_ok=True)
        artifact_location = (root / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except Exception:
        # Another process created it between our lookup and create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def log_and_register(
    *,
    ls_project_id: int,
    save_model: Callable[[Path], Any],
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    run_name: str,
) -> RegisteredModel:
    """Log one training run with its model's files and register them as a version of the project's model.

    `save_model(folder)` writes the model into an empty folder (the backend's own format,
    backends/artefacts.py); the folder becomes the run's artifact `model`, and the registered
    version's source.
    """
    import tempfile

    mlflow = _mlflow()
    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, f"{settings.MLFLOW_EXPERIMENT_PREFIX}{ls_project_id}")
    name = registered_model_name(ls_project_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        with tempfile.TemporaryDirectory(prefix="alo-model-") as tmp:
            folder = Path(tmp) / MODEL_ARTIFACT
            save_model(folder)
            mlflow.log_artifacts(str(folder), artifact_path=MODEL_ARTIFACT)
        source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"
    _ensure_registered_model(client, name)
    registered = client.create_model_version(name=name, source=source, run_id=run.info.run_id)
    version = str(registered.version)
    return RegisteredModel(run_id=run.info.run_id, name=name, version=version, uri=f"models:/{name}/{version}")


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(name)
        except MlflowException:  # another process created it between our lookup and create
            client.get_registered_model(name)


def log_metrics(*, run_id: str, metrics: dict[str, float]) -> None:
    """Add metrics to a run that has ended (a version measured after it started serving)."""
    client = _mlflow().MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))


def set_serving_alias(*, name: str, version: str) -> None:
    _mlflow().MlflowClient().set_registered_model_alias(name, SERVING_ALIAS, version)


def load_pipeline(uri: str) -> Any:
    """Load a registered model (e.g. `models:/name/3`): its files fetched, then read (backends/artefacts.py).

    Versions registered before the service stored its own format are MLflow sklearn models
    (skops, which builds only the types trusted when they were saved): those load through MLflow.
    """
    import tempfile

    mlflow = _mlflow()
    with tempfile.TemporaryDirectory(prefix="alo-load-") as tmp:
        folder = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        if artefacts.is_artefact(folder):
            return artefacts.load(folder)
        import mlflow.sklearn

        return mlflow.sklearn.load_model(str(folder))


def preload() -> None:
    """Import and configure MLflow ahead of the first load (it takes seconds on a cold process)."""
    try:
        _mlflow()
    except Exception:
        logger.warning("mlflow_preload_failed", exc_info=True)
