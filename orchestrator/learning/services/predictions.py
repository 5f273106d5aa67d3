"""Answer /predict: Label Studio predictions with a labelling-priority score for each task."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import strategies
from orchestrator.gateways import label_studio
from orchestrator.learning.serving import Serving


def label_studio_score(priorities: np.ndarray) -> np.ndarray:
    """Label Studio sorts ascending and calls it uncertainty sampling: store 1 - priority.

    So ascending "Prediction score" lists the most informative task first, and for
    least_confidence the number is the model's confidence in its top choice, rescaled
    from [1/k, 1] to [0, 1].
    """
    return np.clip(1.0 - priorities, 0.0, 1.0)


def cold_start_priorities(ls_project_id: int, task_ids: Sequence[Any]) -> np.ndarray:
    """Before any model: a uniform random order, stable per task (the same task, the same score).

    Random sampling is the standard cold start; hashing the ids keeps scores identical
    across requests and workers, so the Data Manager order does not reshuffle.
    """
    out = np.empty(len(task_ids), dtype=np.float64)
    for i, task_id in enumerate(task_ids):
        digest = hashlib.blake2b(f"{ls_project_id}:{task_id}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(digest, "big") / 2**64
    return out


def model_priorities(serving: Serving, probabilities: np.ndarray, task_ids: Sequence[Any],
                     texts: Sequence[str] | None = None) -> np.ndarray:
    """The strategy's priorities for one request's (or one page's) tasks.

    Committee strategies ask the model's committee (the cross-validation folds' models,
    saved with it when the project's strategy was a committee strategy at training time)
    about the same `texts`. Strategies that need a whole pool's features rank pools in the
    scoring job. Whatever cannot be computed here falls back to entropy, the uncertainty
    term those strategies build on. `random` stays stable per task.
    """
    strategy = strategies.get(serving.strategy)
    if strategy.name == "random":
        return cold_start_priorities(serving.ls_project_id, task_ids)
    family = "multi_label" if serving.backend.multiple else "single_label"
    if strategy.kind in (family, "any") and not strategy.batch_aware:
        if strategy.needs == frozenset({"probabilities"}):
            return strategies.priorities(strategy.name, probabilities=probabilities, **serving.strategy_params)
        committee = serving.model.committee if serving.model is not None else ()
        if strategy.needs == frozenset({"committee"}) and len(committee) >= 2 and texts is not None:
            return strategies.priorities(strategy.name, committee_probabilities=serving.model.committee_proba(texts),
                                         **serving.strategy_params)
    # A single-label measure on a multi-label model (or the reverse) means nothing either.
    return strategies.priorities("multilabel_entropy" if serving.backend.multiple else "entropy",
                                 probabilities=probabilities)


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
