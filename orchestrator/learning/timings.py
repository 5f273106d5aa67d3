"""Seconds per phase of a job, as its run row shows them (`TrainingRun.timings`, `ScoringRun.timings`)."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class PhaseTimer:
    """Adds up the seconds spent in each named phase; optionally the longest single call among some."""

    def __init__(self, start: Mapping[str, float] | None = None, *, slowest_of: Iterable[str] = ()) -> None:
        self.totals: dict[str, float] = dict(start or {})  # a resumed job goes on from its recorded totals
        self.slowest_of = frozenset(slowest_of)

    def __call__(self, phase: str, call: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return call()
        finally:
            self.add(phase, time.perf_counter() - started)

    def add(self, phase: str, seconds: float) -> None:
        self.totals[phase] = self.totals.get(phase, 0.0) + seconds
        if phase in self.slowest_of:  # e.g. the longest single call to Label Studio (with its retries)
            self.totals["slowest_call"] = max(self.totals.get("slowest_call", 0.0), seconds)

    def set(self, name: str, value: float) -> None:
        self.totals[name] = value

    def get(self, phase: str, default: float = 0.0) -> float:
        return self.totals.get(phase, default)

    def rounded(self) -> dict[str, Any]:
        """What a run row stores: milliseconds are enough."""
        return {name: round(value, 3) for name, value in self.totals.items()}
