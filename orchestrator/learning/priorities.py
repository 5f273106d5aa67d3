"""From a model's probabilities to each task's priority (higher: label first) and its Label Studio score.

The project's strategy scores when it can run on this model and call (`strategies.applicable`);
what cannot run falls back to entropy. Before any model, the cold start's order. /predict and
the push score the same way.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import strategies
from backends import features
from orchestrator.learning.model_cache import Predictor


def label_studio_score(priorities: np.ndarray) -> np.ndarray:
    """Label Studio sorts ascending and calls it uncertainty sampling: store 1 - priority.

    So ascending "Prediction score" lists the most informative task first, and for
    least_confidence the number is the model's confidence in its top choice, rescaled
    from [1/k, 1] to [0, 1].
    """
    return np.clip(1.0 - priorities, 0.0, 1.0)


def cold_start_priorities(predictor: Predictor, task_ids: Sequence[Any], texts: Sequence[str]) -> np.ndarray:
    """Before any model: the project's diversity order (strategies/cold_start.py) once a push
    fitted it, so /predict and the push place a text alike; until then `stable_random`."""
    if predictor.cold_start is not None:
        return predictor.cold_start.priorities(features.cold_start_vectors(texts))
    return stable_random_priorities(predictor.ls_project_id, task_ids)


def stable_random_priorities(ls_project_id: int, task_ids: Sequence[Any]) -> np.ndarray:
    """A uniform random order, stable per task (the same task, the same score).

    Hashing the ids keeps scores identical across requests and workers, so the Data
    Manager order does not reshuffle.
    """
    return strategies.stable_random(ls_project_id, task_ids)


def model_priorities(predictor: Predictor, probabilities: np.ndarray, task_ids: Sequence[Any],
                     texts: Sequence[str] | None = None) -> np.ndarray:
    """The strategy's priorities for one request's (or one page's) tasks.

    Committee strategies ask the model's committee (the cross-validation folds' models,
    saved with it when the project's strategy was a committee strategy at training time)
    about the same `texts`. Batch-aware strategies need the whole pool: the push ranks it
    (scoring/pool.py); here they fall back. `random` stays stable per task.
    """
    named = strategies.get(predictor.strategy)
    model = predictor.model
    committee = model.committee if "committee" in named.needs and model is not None and texts is not None else ()
    strategy = strategies.applicable(named.name, multilabel=predictor.backend.multiple, committee_size=len(committee))
    if strategy.name == "random":
        return stable_random_priorities(predictor.ls_project_id, task_ids)
    options = predictor.strategy_params if strategy is named else {}  # a fallback runs with its defaults
    if "committee" in strategy.needs:
        return strategies.priorities(strategy.name, committee_probabilities=model.committee_proba(texts), **options)
    return strategies.priorities(strategy.name, probabilities=probabilities, **options)
