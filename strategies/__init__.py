"""Active-learning query strategies as pure numpy functions, registered by name.
Every strategy returns one priority per pool item in [0, 1]; higher = label first. Use ``priorities``."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from strategies.batch import DEFAULT_CANDIDATES, ranked_batch
from strategies.committee import consensus_entropy, vote_entropy
from strategies.multilabel import multilabel_entropy, multilabel_least_confidence, multilabel_margin
from strategies.registry import Strategy, UnknownStrategyError, get, names, register
from strategies.selection import applicable, audit_order, fallback, labelling_order, stable_random
from strategies.uncertainty import entropy, least_confidence, margin, random

__all__ = [
    "Strategy",
    "UnknownStrategyError",
    "applicable",
    "audit_order",
    "check_options",
    "consensus_entropy",
    "entropy",
    "fallback",
    "get",
    "labelling_order",
    "least_confidence",
    "margin",
    "multilabel_entropy",
    "multilabel_least_confidence",
    "multilabel_margin",
    "names",
    "priorities",
    "random",
    "ranked_batch",
    "register",
    "stable_random",
    "vote_entropy",
]


def _ranked_batch_by_entropy(
    probabilities: ArrayLike,
    features: ArrayLike,
    labeled_features: ArrayLike | None = None,
    *,
    multilabel: bool = False,
    candidates: int = DEFAULT_CANDIDATES,
    metric: str = "cosine",
) -> np.ndarray:
    # Entropy rather than modAL's 1 - max p: it uses the whole distribution, and
    # multilabel_entropy is its exact per-label counterpart, so the multilabel
    # option changes how probabilities are read, not what is measured.
    uncertainty = multilabel_entropy(probabilities) if multilabel else entropy(probabilities)
    return ranked_batch(uncertainty, features, labeled_features, candidates=candidates, metric=metric)


_PROBABILITIES = frozenset({"probabilities"})

# Registry input name -> keyword argument that carries it.
_ARGUMENT = {
    "probabilities": "probabilities",
    "committee": "committee_probabilities",
    "features": "features",
}

for _strategy in (
    Strategy("least_confidence", least_confidence, "single_label", _PROBABILITIES,
             description="1 - max class probability, scaled to [0, 1]"),
    Strategy("margin", margin, "single_label", _PROBABILITIES,
             description="1 - (top class probability - runner-up probability)"),
    Strategy("entropy", entropy, "single_label", _PROBABILITIES,
             description="entropy of the class distribution / log k"),
    Strategy("random", random, "any", frozenset(),
             description="uniform random priorities, reproducible for a seed"),
    Strategy("multilabel_least_confidence", multilabel_least_confidence, "multi_label",
             _PROBABILITIES,
             description="1 - probability of the predicted label set, scaled to [0, 1]"),
    Strategy("multilabel_entropy", multilabel_entropy, "multi_label", _PROBABILITIES,
             description="mean binary entropy over labels, in bits"),
    Strategy("multilabel_margin", multilabel_margin, "multi_label", _PROBABILITIES,
             description="1 - |2p - 1| of the most uncertain label"),
    Strategy("ranked_batch", _ranked_batch_by_entropy, "any",
             frozenset({"probabilities", "features"}), batch_aware=True,
             description="ranked batch-mode sampling: entropy traded off against diversity "
                         "(options: multilabel, candidates, metric)"),
    Strategy("vote_entropy", vote_entropy, "single_label", frozenset({"committee"}),
             description="entropy of committee members' votes, scaled to [0, 1]"),
    Strategy("consensus_entropy", consensus_entropy, "single_label", frozenset({"committee"}),
             description="entropy of the committee's mean distribution / log k"),
):
    register(_strategy)
del _strategy


def priorities(
    name: str,
    *,
    probabilities: ArrayLike | None = None,
    features: ArrayLike | None = None,
    labeled_features: ArrayLike | None = None,
    committee_probabilities: ArrayLike | None = None,
    seed: int = 0,
    **options: Any,
) -> np.ndarray:
    """Run strategy ``name`` on a pool; float64 array (n,) in [0, 1], higher = label first.

    Only the inputs the strategy needs are used (see ``get(name).needs``). ``seed``
    matters only for random, which takes its pool size from the first input given
    (or ``n=``). Remaining keyword arguments are the strategy's options, e.g.
    ``candidates=`` or ``multilabel=True`` for ranked_batch.
    """
    strategy = get(name)
    given = {
        "probabilities": probabilities,
        "committee_probabilities": committee_probabilities,
        "features": features,
    }
    missing = [_ARGUMENT[need] for need in sorted(strategy.needs) if given[_ARGUMENT[need]] is None]
    if missing:
        raise ValueError(
            f"strategy {name!r} needs {' and '.join(missing)}, but "
            f"{'it was' if len(missing) == 1 else 'they were'} not given"
        )

    if strategy.needs:
        args: tuple[Any, ...] = ()
        kwargs = {_ARGUMENT[need]: given[_ARGUMENT[need]] for need in strategy.needs}
        if "features" in strategy.needs:
            kwargs["labeled_features"] = labeled_features
    else:
        args, kwargs = (_pool_size(given, options.pop("n", None)),), {"seed": seed}
    kwargs.update(options)
    try:
        inspect.signature(strategy.function).bind(*args, **kwargs)
    except TypeError as error:
        raise ValueError(f"strategy {name!r} was given unsupported options: {error}") from None
    return strategy.function(*args, **kwargs)


def check_options(name: str, options: dict[str, Any], *, multilabel: bool = False) -> None:
    """Raise ValueError naming what is wrong if strategy ``name`` cannot run with ``options``.

    The options are tried on a small made-up pool (probabilities, features and a committee of
    the right shapes), so a bad value fails here, at configuration time, rather than when a
    whole pool is scored.
    """
    get(name)
    if not isinstance(options, dict):
        raise ValueError(f"strategy options must be an object, got {type(options).__name__}")
    generator = np.random.default_rng(0)
    probabilities = generator.dirichlet(np.ones(3), size=8)
    if multilabel:
        probabilities = generator.uniform(size=(8, 3))
    pool = {
        "probabilities": probabilities,
        "features": generator.normal(size=(8, 4)),
        "labeled_features": generator.normal(size=(3, 4)),
        "committee_probabilities": generator.dirichlet(np.ones(3), size=(3, 8)),
    }
    try:
        result = priorities(name, **pool, **options)
    except ValueError:
        raise
    except Exception as error:  # a value of the wrong type or outside what the function accepts
        raise ValueError(f"strategy {name!r} cannot run with options {options}: {error}") from None
    if np.shape(result) != (8,) or not np.all(np.isfinite(result)):
        raise ValueError(f"strategy {name!r} gives no usable priorities with options {options}")


def option_names(name: str) -> list[str]:
    """The options strategy ``name`` takes (keyword arguments beyond its inputs), with their defaults."""
    strategy = get(name)
    inputs = {"probabilities", "features", "labeled_features", "committee_probabilities", "seed"}
    described = []
    for parameter in inspect.signature(strategy.function).parameters.values():
        if parameter.name in inputs or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if parameter.default is parameter.empty:
            continue
        described.append(f"{parameter.name}={parameter.default!r}")
    return described


def _pool_size(given: dict[str, ArrayLike | None], n: int | None) -> int:
    if n is not None:
        return n
    for argument in ("probabilities", "features"):
        if given[argument] is not None:
            return np.shape(given[argument])[0]
    if given["committee_probabilities"] is not None:
        # (members, items, classes): the pool is the second axis.
        return np.shape(given["committee_probabilities"])[1]
    raise ValueError("strategy 'random' needs the pool size: pass n= or any of the pool inputs")
