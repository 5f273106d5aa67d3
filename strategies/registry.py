"""Name -> strategy lookup, with what each strategy needs as input and which label setting it fits.
The service stores strategy names in configuration; this is where they are resolved and validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

KINDS = ("single_label", "multi_label", "any")
INPUTS = ("probabilities", "features", "committee")


class UnknownStrategyError(ValueError):
    """Raised for a strategy name that was never registered."""


@dataclass(frozen=True)
class Strategy:
    """A registered strategy.

    ``function`` is called with keyword arguments: ``probabilities=`` if
    "probabilities" is needed, ``committee_probabilities=`` if "committee" is,
    ``features=`` and ``labeled_features=`` if "features" is, plus any options.
    A strategy that needs nothing (random) is called as ``function(pool_size, seed=...)``.
    ``batch_aware`` strategies rank the pool jointly, so their priorities are only
    meaningful as an order over the whole pool they were computed on.
    """

    name: str
    function: Callable[..., np.ndarray]
    kind: str
    needs: frozenset[str]
    batch_aware: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        unknown = set(self.needs) - set(INPUTS)
        if unknown:
            raise ValueError(
                f"needs may only contain {', '.join(INPUTS)}, got {', '.join(sorted(unknown))}"
            )


_REGISTRY: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    if strategy.name in _REGISTRY:
        raise ValueError(f"strategy {strategy.name!r} is already registered")
    _REGISTRY[strategy.name] = strategy
    return strategy


def get(name: str) -> Strategy:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownStrategyError(
            f"unknown strategy {name!r}; known strategies: {', '.join(names())}"
        ) from None


def names(kind: str | None = None) -> list[str]:
    """Sorted strategy names; with ``kind``, those usable for it ("any" fits every kind)."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return sorted(
        name
        for name, strategy in _REGISTRY.items()
        if kind is None or strategy.kind in (kind, "any")
    )
