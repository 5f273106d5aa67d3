"""Answer /predict: the project's predictor, then one Label Studio prediction with a priority score per task."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings

from orchestrator.gateways import label_studio
from orchestrator.learning import projects, selectors
from orchestrator.learning.model_cache import Predictor, model_cache
from orchestrator.learning.priorities import cold_start_priorities, label_studio_score, model_priorities


def predictor_for_request(*, project_key: Any, label_config: str | None,
                          tasks: Sequence[Mapping[str, Any]] = ()) -> Predictor:
    """The predictor for a /predict call: this process's, when it answers the call's label config;
    otherwise the project is registered (or its config updated) from the call first."""
    found = selectors.cached_predictor(project_key=project_key, label_config=label_config)
    if found is not None:
        return found
    return model_cache.predictor_for(projects.project_for_predict(project_key=project_key, label_config=label_config,
                                                                  tasks=tasks))


def predict(*, predictor: Predictor, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One Label Studio prediction per task, in order, all of one version."""
    backend = predictor.backend
    fetch = label_studio.fetch_text if label_studio.is_configured() else None
    texts = backend.texts(tasks, fetch, threads=settings.URL_FETCH_THREADS)  # TaskDataError names the task and the missing key
    if predictor.model is None:
        results: list[list[dict[str, Any]]] = [[] for _ in tasks]
        priorities = cold_start_priorities(predictor, [t.get("id") for t in tasks], texts)
    else:
        probabilities = predictor.model.predict_proba(texts)
        results = backend.results(probabilities)
        priorities = model_priorities(predictor, probabilities, [t.get("id") for t in tasks], texts)
    scores = label_studio_score(priorities)
    version = predictor.version
    return [
        {"result": result, "score": round(float(score), 6), "model_version": version}
        for result, score in zip(results, scores)
    ]
