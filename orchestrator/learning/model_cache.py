"""This process's cache of models and of each project's predictor (backend, version, model, strategy).

Per project, never process-global; a predictor is refreshed from the database every few
seconds, so a newly promoted version serves without a restart; models are cached per version.

Loading a model (MLflow import, registry lookup, unpickling) takes seconds on a cold
process. Only /predict waits for it (Label Studio gives /predict 100 s); /setup and
/versions (3 s) only announce the version and start the load in the background.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

from backends import TextClassificationBackend, TextClassifier, backend_for
from orchestrator.gateways import mlflow_store
from orchestrator.learning.models import COLD_START_VERSION, ColdStart, Project
from strategies.cold_start import ColdStartOrder

logger = logging.getLogger(__name__)

MODEL_CACHE_SIZE = 16
# After a failed load, answer from cold start for this long before trying again.
LOAD_RETRY_SECONDS = 30.0


@dataclass(frozen=True)
class Predictor:
    """What a project answers with right now: a consistent snapshot, so answers never mix versions."""

    project_pk: int
    ls_project_id: int
    version: str
    backend: TextClassificationBackend
    model: TextClassifier | None  # None: cold start
    strategy: str
    strategy_params: dict
    fetched_at: float
    cold_start: ColdStartOrder | None = None  # without a model: the project's diversity order, once fitted


class ModelCache:
    """Loaded models by URI (the newest MODEL_CACHE_SIZE) and each project's current Predictor."""

    def __init__(self) -> None:
        self._predictors: dict[int, Predictor] = {}
        self._backends: dict[tuple[int, str], TextClassificationBackend] = {}
        self._models: OrderedDict[str, TextClassifier] = OrderedDict()
        self._lock = threading.Lock()
        self._load_locks: dict[str, threading.Lock] = {}
        self._failed: dict[str, float] = {}
        self._warming: set[str] = set()
        self._cold_starts: dict[int, tuple[object, ColdStartOrder]] = {}  # project pk -> (fitted_at, order)

    def clear(self) -> None:
        with self._lock:
            self._predictors.clear()
            self._backends.clear()
            self._models.clear()
            self._failed.clear()
            self._cold_starts.clear()

    def forget(self, ls_project_id: int) -> None:
        with self._lock:
            self._predictors.pop(ls_project_id, None)

    def predictor(self, ls_project_id: int) -> Predictor | None:
        """The project's predictor, or None if the project is unknown."""
        state = self._predictors.get(ls_project_id)
        if state is not None and time.monotonic() - state.fetched_at < settings.ALO_SERVING_REFRESH_SECONDS:
            return state
        project = Project.objects.select_related("serving_version").filter(ls_project_id=ls_project_id).first()
        if project is None:
            return None
        return self._refresh(project)

    def predictor_for(self, project: Project) -> Predictor:
        """The predictor for a project row just read or written (skips the database read)."""
        state = self._predictors.get(project.ls_project_id)
        if state is not None and time.monotonic() - state.fetched_at < settings.ALO_SERVING_REFRESH_SECONDS and state.project_pk == project.pk:
            if state.backend.config.digest == project.label_config_digest and state.strategy == project.strategy:
                return state
        return self._refresh(project)

    def announced_version(self, project: Project) -> str:
        """The version /setup reports, without waiting for a model load.

        If this process has not loaded the serving model yet, the load starts in the
        background so the /predict that usually follows finds it ready.
        """
        version = project.usable_serving_version()
        if version is None:
            return COLD_START_VERSION
        uri = version.model_uri
        if uri in self._models:
            return version.version
        if self._recently_failed(uri):
            return COLD_START_VERSION
        self.warm(uri, self._backend(project))
        return version.version

    def warm_all(self) -> None:
        """Start loading every project's serving model (a web worker calls this as it boots)."""
        from django.db import connection

        try:
            for project in Project.objects.select_related("serving_version").exclude(serving_version=None):
                self.announced_version(project)
        except Exception:  # a worker must boot even if the database is not migrated yet
            logger.warning("warm_all_skipped", exc_info=True)
        finally:
            connection.close()

    def warm(self, uri: str, backend: TextClassificationBackend) -> None:
        """Load a model in a background thread (once per URI at a time)."""
        with self._lock:
            if uri in self._models or uri in self._warming:
                return
            self._warming.add(uri)

        def load() -> None:
            try:
                self._model(uri, backend)
            finally:
                with self._lock:
                    self._warming.discard(uri)

        threading.Thread(target=load, name=f"warm-{uri}", daemon=True).start()

    def _recently_failed(self, uri: str) -> bool:
        failed_at = self._failed.get(uri)
        return failed_at is not None and time.monotonic() - failed_at < LOAD_RETRY_SECONDS

    def _refresh(self, project: Project) -> Predictor:
        backend = self._backend(project)
        version, model = COLD_START_VERSION, None
        usable = project.usable_serving_version()
        if usable is not None:
            model = self._model(usable.model_uri, backend)
            if model is not None:  # a model that fails to load answers from cold start, for a while
                version = usable.version
        cold_start = self._cold_start(project.pk) if model is None else None
        state = Predictor(
            project_pk=project.pk,
            ls_project_id=project.ls_project_id,
            version=version,
            backend=backend,
            model=model,
            strategy=project.strategy,
            strategy_params=dict(project.strategy_params or {}),
            fetched_at=time.monotonic(),
            cold_start=cold_start,
        )
        self._predictors[project.ls_project_id] = state
        return state

    def _cold_start(self, project_pk: int) -> ColdStartOrder | None:
        """The project's cold-start order: a small read each refresh, its data only when it was refitted."""
        fitted_at = ColdStart.objects.filter(project_id=project_pk).values_list("fitted_at", flat=True).first()
        if fitted_at is None:
            self._cold_starts.pop(project_pk, None)
            return None
        known = self._cold_starts.get(project_pk)
        if known is not None and known[0] == fitted_at:
            return known[1]
        row = ColdStart.objects.filter(project_id=project_pk).values_list("fitted_at", "data").first()
        if row is None:
            return None
        order = ColdStartOrder.loads(row[1])
        self._cold_starts[project_pk] = (row[0], order)
        return order

    def _backend(self, project: Project) -> TextClassificationBackend:
        key = (project.pk, project.label_config_digest)
        backend = self._backends.get(key)
        if backend is None:
            backend = backend_for(project.label_config)
            self._backends[key] = backend
        return backend

    def _model(self, uri: str, backend: TextClassificationBackend) -> TextClassifier | None:
        model = self._models.get(uri)
        if model is not None:
            return model
        if self._recently_failed(uri):
            return None
        with self._lock:
            lock = self._load_locks.setdefault(uri, threading.Lock())
        with lock:  # one load per version, however many requests wait for it
            model = self._models.get(uri)
            if model is not None:
                return model
            try:
                model = backend.wrap(mlflow_store.load_pipeline(uri))
            except Exception:
                # Keep answering (cold start) rather than failing every request.
                logger.exception("model_load_failed uri=%s", uri)
                self._failed[uri] = time.monotonic()
                return None
            with self._lock:
                self._failed.pop(uri, None)
            self.put_model(uri, model)
            return model

    def load(self, uri: str, backend: TextClassificationBackend) -> TextClassifier:
        """The model at `uri`, from this process's cache or loaded now; raises if it cannot be loaded."""
        model = self._models.get(uri)
        if model is None:
            model = backend.wrap(mlflow_store.load_pipeline(uri))
            self.put_model(uri, model)
        return model

    def put_model(self, uri: str, model: TextClassifier) -> None:
        """Cache a model (loaded, or just trained: saves a load), keeping the newest MODEL_CACHE_SIZE."""
        with self._lock:
            self._models[uri] = model
            self._models.move_to_end(uri)
            while len(self._models) > MODEL_CACHE_SIZE:
                self._models.popitem(last=False)


model_cache = ModelCache()
