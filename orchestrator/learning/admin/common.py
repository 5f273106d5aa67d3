"""What the console's admin pages share: read-only records, number formats, progress bars, and
lists that refresh themselves while a run is active."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

import strategies
from orchestrator.learning import access
from orchestrator.learning.models import ModelVersion, ScoringRun

# Pages of runs refresh themselves while one of the listed runs is queued or running.
REFRESH_SECONDS = 3


def strategy_choices() -> list[tuple[str, str]]:
    return [(name, f"{name}: {strategies.get(name).description}") for name in strategies.names()]


class Steering:
    """Admin pages whose actions steer a project: offered only to accounts that may (`permissions=["steer"]`)."""

    def has_steer_permission(self, request: HttpRequest) -> bool:
        return access.can_steer(request.user)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the service writes: listed and opened, never added or edited by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False



def _metric(version: ModelVersion, key: str) -> str:
    value = (version.metrics or {}).get(key)
    return "-" if value is None else f"{value:.3f}"


def estimate_text(version: ModelVersion) -> str:
    """The unbiased audit estimate, its 90% interval and how many audit labels: `0.912 [0.87, 0.95] n=42`,
    or `-` without audit labels."""
    metrics = version.metrics or {}
    if metrics.get("audit_macro_f1") is None:
        return "-"
    return (f"{metrics['audit_macro_f1']:.3f} [{metrics.get('audit_macro_f1_low', 0):.2f}, "
            f"{metrics.get('audit_macro_f1_high', 1):.2f}] n={int(metrics.get('audit_labels', 0))}")


def progress_bar(run: ScoringRun) -> str:
    fraction = run.done / run.total if run.total else (1.0 if run.status == ScoringRun.Status.SUCCEEDED else 0.0)
    return format_html("<progress class='alo-progress' value='{}' max='{}' title='{}'></progress> {}/{}", run.done,
                       max(run.total, 1), f"{fraction:.0%}", run.done, run.total)


def _duration(started, finished) -> str:
    if started is None:
        return "-"
    seconds = ((finished or timezone.now()) - started).total_seconds()
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _timings(timings: dict, top: int | None = 3) -> str:
    """The slowest `top` phases (all of them with None), slowest first: where a run's time went."""
    phases = sorted(((phase, seconds) for phase, seconds in (timings or {}).items()
                     if isinstance(seconds, (int, float)) and phase != "slowest_call"), key=lambda p: -p[1])
    return ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases[:top]) or "-"


def duration_and_phases(run) -> str:
    """A run's duration, and under it the slowest phases (a training or a scoring run)."""
    phases = _timings(run.timings)
    return format_html("{}<br><small>{}</small>", _duration(run.started_at, run.finished_at),
                       "" if phases == "-" else phases)


def _short(text: str, limit: int = 90) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit - 1] + "…"


class RefreshWhileRunning:
    """A list of runs reloads itself every few seconds while one of them is queued or running."""

    active_statuses: tuple[str, ...] = ()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        response = super().changelist_view(request, extra_context)
        try:
            listed = response.context_data["cl"].result_list
        except (AttributeError, KeyError):
            return response
        if any(run.status in self.active_statuses for run in listed):
            response["Refresh"] = str(REFRESH_SECONDS)
        return response
