"""Model versions: metrics as columns, the MLflow run, and promote / roll back / retire."""
from __future__ import annotations

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from orchestrator.learning import versions
from orchestrator.learning.admin.common import ReadOnlyAdmin, Steering, _metric, estimate_text
from orchestrator.learning.models import ModelVersion, Project


@admin.register(ModelVersion)
class ModelVersionAdmin(Steering, ReadOnlyAdmin):
    # Ten short columns, so the list fits a 1,400-pixel window beside its filters.
    list_display = ("version", "project", "status", "labels", "estimate", "scores", "class_counts", "kappa", "mlflow_run",
                    "finished")
    list_filter = ("status", "stop_suggested", "features", "strategy", "project")
    search_fields = ("version", "mlflow_run_id")
    exclude = ("stop_predictions",)
    actions = ["promote", "roll_back", "retire"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("project").defer("stop_predictions")

    @admin.display(description="κ to previous", ordering="stop_kappa")
    def kappa(self, version: ModelVersion) -> str:
        kappa = "-" if version.stop_kappa is None else f"{version.stop_kappa:.3f}"
        return f"{kappa}, stop suggested" if version.stop_suggested else kappa

    @admin.display(description="F1, audit [90%] n")
    def estimate(self, version: ModelVersion) -> str:
        return estimate_text(version)

    @admin.display(description="F1 / acc., labelled (biased)")
    def scores(self, version: ModelVersion) -> str:
        return f"{_metric(version, 'macro_f1')} / {_metric(version, 'accuracy')}"

    @admin.display(description="finished", ordering="finished_at")
    def finished(self, version: ModelVersion) -> str:
        return timezone.localtime(version.finished_at).strftime("%Y-%m-%d %H:%M") if version.finished_at else "-"

    @admin.display(description="labels", ordering="num_annotations")
    def labels(self, version: ModelVersion) -> int:
        return version.num_annotations

    @admin.display(description="per class")
    def class_counts(self, version: ModelVersion) -> str:
        counts = {k.removeprefix("count_"): int(v) for k, v in (version.metrics or {}).items()
                  if k.startswith("count_")}
        return ", ".join(f"{label} {n}" for label, n in counts.items()) or "-"

    @admin.display(description="MLflow")
    def mlflow_run(self, version: ModelVersion) -> str:
        if not version.mlflow_run_id:
            return "-"
        if not settings.MLFLOW_UI_URL:
            return version.mlflow_run_id[:12]
        return format_html("<a href='{}/#/experiments/0/runs/{}' target='_blank'>{}</a>", settings.MLFLOW_UI_URL,
                           version.mlflow_run_id, version.mlflow_run_id[:12])

    @admin.action(permissions=["steer"], description="Promote: serve this version and re-score the queue")
    def promote(self, request: HttpRequest, queryset: QuerySet) -> None:
        if queryset.count() != 1:
            self.message_user(request, "select exactly one version to promote", messages.ERROR)
            return
        try:
            self.message_user(request, f"{queryset.get().project}: {versions.promote(queryset.get()).describe()}")
        except versions.VersionError as error:
            self.message_user(request, str(error), messages.ERROR)

    @admin.action(permissions=["steer"], description="Roll back its project: serve the version the last promotion replaced")
    def roll_back(self, request: HttpRequest, queryset: QuerySet) -> None:
        for project in Project.objects.filter(pk__in=queryset.values("project")):
            try:
                self.message_user(request, f"{project}: {versions.roll_back(project).describe()}")
            except versions.VersionError as error:
                self.message_user(request, str(error), messages.ERROR)

    @admin.action(permissions=["steer"], description="Retire: never serve it again by a roll back")
    def retire(self, request: HttpRequest, queryset: QuerySet) -> None:
        for version in queryset:
            try:
                versions.retire(version)
                self.message_user(request, f"{version.project}: {version.version} is retired")
            except versions.VersionError as error:
                self.message_user(request, str(error), messages.ERROR)
