"""Answer /predict: Label Studio predictions with a labelling-priority score for each task."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.gateways import label_studio
from orchestrator.learning.priorities import cold_start_priorities, label_studio_score, model_priorities
from orchestrator.learning.serving import Serving


def predict(*, serving: Serving, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One Label Studio prediction per task, in order, all of the serving version."""
    backend = serving.backend
    fetch = label_studio.fetch_text if label_studio.is_configured() else None
    texts = backend.texts(tasks, fetch)  # TaskDataError names the task and the missing key
    if serving.model is None:
        results: list[list[dict[str, Any]]] = [[] for _ in tasks]
        priorities = cold_start_priorities(serving.ls_project_id, [t.get("id") for t in tasks])
    else:
        probabilities = serving.model.predict_proba(texts)
        results = backend.results(probabilities)
        priorities = model_priorities(serving, probabilities, [t.get("id") for t in tasks], texts)
    scores = label_studio_score(priorities)
    version = serving.version
    return [
        {"result": result, "score": round(float(score), 6), "model_version": version}
        for result, score in zip(results, scores)
    ]
