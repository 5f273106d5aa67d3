"""Training and scoring runs (progress, duration, phases, cancel, retry) and received events."""
from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from orchestrator.learning.admin.common import (
    ReadOnlyAdmin,
    RefreshWhileRunning,
    Steering,
    _short,
    _timings,
    duration_and_phases,
    progress_bar,
)
from orchestrator.learning.models import Project, ScoringRun, TrainingRun, WebhookEvent
from orchestrator.learning.scoring import runs
from orchestrator.learning.training import loop as training_loop
from orchestrator.learning.training import schedule as training_schedule


@admin.register(TrainingRun)
class TrainingRunAdmin(Steering, RefreshWhileRunning, ReadOnlyAdmin):
    active_statuses = (TrainingRun.Status.RUNNING,)
    list_display = ("pk", "project", "trigger", "status", "num_events", "num_annotations", "model_version",
                    "promoted", "duration", "started_at", "detail_text")
    list_filter = ("status", "trigger", "project")
    search_fields = ("project__ls_project_id", "detail")
    actions = ["cancel", "retry"]

    @admin.display(description="duration (slowest phases)")
    def duration(self, run: TrainingRun) -> str:
        return duration_and_phases(run)

    @admin.display(description="detail")
    def detail_text(self, run: TrainingRun) -> str:
        asked = f"cancel asked by {run.cancel_requested_by}" if run.cancel_requested_by and not run.detail else ""
        return _short(run.detail or asked) or "-"

    @admin.action(permissions=["steer"],
                  description="Cancel (stops before its next phase; a fitted version is not promoted)")
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        for run in queryset:
            try:
                training_loop.cancel(run, by=request.user.get_username())
                self.message_user(request, f"training run {run.pk} of {run.project} stops before its next phase")
            except training_loop.CancelError as error:
                self.message_user(request, str(error), messages.ERROR)

    @admin.action(permissions=["steer"], description="Retry: train the project now")
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        for project in Project.objects.filter(pk__in=queryset.values("project")):
            event = training_schedule.request_training(project)
            self.message_user(request, f"{project}: training asked for (event {event.pk})")


@admin.register(ScoringRun)
class ScoringRunAdmin(Steering, RefreshWhileRunning, ReadOnlyAdmin):
    active_statuses = (ScoringRun.Status.QUEUED, ScoringRun.Status.RUNNING)
    list_display = ("pk", "project", "tag", "strategy", "trigger", "state", "progress", "duration", "error_text")
    readonly_fields = ("all_phases",)
    list_filter = ("status", "mode", "trigger", "project")
    search_fields = ("project__ls_project_id", "tag", "error")
    actions = ["cancel", "retry"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("project", "model_version")

    @admin.display(description="progress (tasks)")
    def progress(self, run: ScoringRun) -> str:
        return progress_bar(run)

    @admin.display(description="status", ordering="status")
    def state(self, run: ScoringRun) -> str:
        return run.get_status_display() + (f" (attempt {run.attempts})" if run.attempts > 1 else "")

    @admin.display(description="duration (slowest phases)")
    def duration(self, run: ScoringRun) -> str:
        return duration_and_phases(run)

    @admin.display(description="phases (seconds)")
    def all_phases(self, run: ScoringRun) -> str:
        return _timings(run.timings, top=None)

    @admin.display(description="error")
    def error_text(self, run: ScoringRun) -> str:
        return _short(run.error) or "-"

    @admin.action(permissions=["steer"], description="Cancel (stops before its next chunk)")
    def cancel(self, request: HttpRequest, queryset: QuerySet) -> None:
        for run in queryset:
            try:
                runs.cancel(run, by=request.user.get_username())
                where = f"at {run.done}/{run.total}" if run.started_at else "before it started"
                self.message_user(request, f"scoring run {run.pk} ({run.tag}) is cancelled {where}")
            except runs.RunError as error:
                self.message_user(request, str(error), messages.ERROR)

    @admin.action(permissions=["steer"], description="Retry (goes on from where it stopped when it can)")
    def retry(self, request: HttpRequest, queryset: QuerySet) -> None:
        for run in queryset:
            try:
                answer = runs.retry(run)
            except runs.RunError as error:
                self.message_user(request, str(error), messages.ERROR)
                continue
            if answer is None:
                self.message_user(request, f"scoring run {run.pk}: nothing to score with", messages.WARNING)
            elif answer.pk == run.pk:
                self.message_user(request, f"scoring run {run.pk} goes on from {run.cursor} ({answer.status})")
            else:
                self.message_user(request, f"scoring run {run.pk}: a new run {answer.pk} ({answer.tag}) re-scores")


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super(ReadOnlyAdmin, self).has_delete_permission(request, obj)  # old events may go

    list_display = ("action", "ls_project_id", "cancelled", "received_at", "processed_at")
    list_filter = ("action", "cancelled")
