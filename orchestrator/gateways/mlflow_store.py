"""The only gateway to MLflow: runs, the model registry, aliases, and loading models.

MLflow is imported lazily (it takes 1-2 s), so web processes that never train or load
a model, and the /health path, never pay for it.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

SERVING_ALIAS = "champion"
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
    pipeline: Any,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
    run_name: str,
    trusted_types: Sequence[str] = (),
) -> RegisteredModel:
    """Log one training run with its fitted pipeline and register it under the project's model.

    `trusted_types`: the pipeline's own classes (beyond scikit-learn's) its loading may build.
    """
    mlflow = _mlflow()
    import mlflow.sklearn
    import sklearn

    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, f"{settings.MLFLOW_EXPERIMENT_PREFIX}{ls_project_id}")
    name = registered_model_name(ls_project_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        if metrics:
            mlflow.log_metrics(metrics)
        mlflow.set_tags(tags)
        # Explicit requirements: inferring them costs ~5 s per model (see stack notes).
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            registered_model_name=name,
            # MLflow stores sklearn models with skops, which loads only the types it is told to trust.
            skops_trusted_types=list(trusted_types) or None,
        )
    version = str(info.registered_model_version)
    return RegisteredModel(run_id=run.info.run_id, name=name, version=version, uri=f"models:/{name}/{version}")


def set_serving_alias(*, name: str, version: str) -> None:
    _mlflow().MlflowClient().set_registered_model_alias(name, SERVING_ALIAS, version)


def load_pipeline(uri: str) -> Any:
    """Load a registered sklearn pipeline (e.g. `models:/name/3`)."""
    mlflow = _mlflow()
    import mlflow.sklearn

    return mlflow.sklearn.load_model(uri)


def preload() -> None:
    """Import and configure MLflow ahead of the first load (it takes seconds on a cold process)."""
    try:
        _mlflow()
        import mlflow.sklearn  # noqa: F401
    except Exception:
        logger.warning("mlflow_preload_failed", exc_info=True)
