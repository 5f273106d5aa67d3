"""What a scoring job carries from step to step, and the checks each step makes on its run."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.gateways import label_studio
from orchestrator.learning.model_cache import Predictor
from orchestrator.learning.models import Project, ScoringPolicy, ScoringRun
from orchestrator.learning.scoring.chunks import ChunkSizer
from orchestrator.learning.timings import PhaseTimer

T = TypeVar("T")

ACTIVE = (ScoringRun.Status.QUEUED, ScoringRun.Status.RUNNING)
# Phases that are single calls to Label Studio: the timings also keep the slowest one. ("mirror"
# is several: the task mirror's check and the labeled ids; "read" reads the service's database.)
HTTP_PHASES = frozenset({"push", "verify", "switch", "cleanup"})


class Superseded(Exception):
    """A newer run took over this run's project."""


@dataclass
class RunContext:
    """One execution of a run: its rows, the model it scores with, and what it learns along the way."""

    run: ScoringRun
    project: Project
    policy: ScoringPolicy
    predictor: Predictor  # the run's version; its `version` is the run's tag
    timer: PhaseTimer
    sizer: ChunkSizer
    dropped: int = 0  # predictions Label Studio refused as invalid
    # Predictions of the run's tag in Label Studio, kept up to date from each import's answer
    # (None: ask). Only a lost answer needs it; deletions meanwhile can only lower the truth,
    # which sends that check to the per-task one, never past it.
    tag_count: int | None = None
    warned_fixed_cost: bool = False
    labeled: Any = None  # the ids Label Studio counted as labeled when the pool was read (numpy int64)

    @property
    def model(self):
        return self.predictor.model


def save(run: ScoringRun, **fields: Any) -> None:
    """Write these fields of the run now (and on the instance), leaving the others alone."""
    for name, value in fields.items():
        setattr(run, name, value)
    ScoringRun.objects.filter(pk=run.pk).update(**fields)


def check_current(run: ScoringRun) -> None:
    """Raise Superseded once the run is no longer the one running (a newer version took over)."""
    status = ScoringRun.objects.filter(pk=run.pk).values_list("status", flat=True).first()
    if status != ScoringRun.Status.RUNNING:
        raise Superseded()


def call_label_studio(call: Callable[[], T], what: str) -> T:
    """One call to Label Studio, retried on transport errors, 5xx and 429 (the gateway's loop)."""
    return label_studio.with_retries(call, what=what)
