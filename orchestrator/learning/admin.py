"""Django admin for projects, training policies and runs, model versions and received events."""
from django.contrib import admin

from orchestrator.learning.models import (
    ModelVersion,
    Project,
    ScoringPolicy,
    ScoringRun,
    TrainingPolicy,
    TrainingRun,
    WebhookEvent,
)
from orchestrator.learning.scoring import runs


class TrainingPolicyInline(admin.StackedInline):
    model = TrainingPolicy
    can_delete = False
    extra = 1
    max_num = 1


class ScoringPolicyInline(admin.StackedInline):
    model = ScoringPolicy
    can_delete = False
    extra = 1
    max_num = 1


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ("version", "status", "features", "num_annotations", "metrics", "mlflow_run_id", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("ls_project_id", "title", "backend", "strategy", "features", "serving_version", "last_setup_at",
                    "updated_at")
    search_fields = ("ls_project_id", "title")
    readonly_fields = ("ls_project_key", "label_config_digest", "backend", "ls_hostname", "serving_version",
                       "created_at", "updated_at", "last_setup_at")
    inlines = [TrainingPolicyInline, ScoringPolicyInline, ModelVersionInline]
    actions = ["score_and_push"]

    @admin.action(description="Score unlabeled tasks and push them to Label Studio")
    def score_and_push(self, request, queryset):
        for project in queryset:
            run = runs.request_scoring(project, trigger="admin")
            what = " (no trained version serves yet: the cold start's order)" if run.cold_start else ""
            self.message_user(request, f"{project}: scoring run {run.pk} ({run.status}, {run.tag}){what}")


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("pk", "project", "trigger", "status", "num_events", "num_annotations", "model_version",
                    "promoted", "started_at", "finished_at")
    list_filter = ("status", "trigger")
    search_fields = ("project__ls_project_id", "detail")
    readonly_fields = [f.name for f in TrainingRun._meta.fields]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("version", "project", "status", "num_annotations", "macro_f1", "kappa", "stop", "finished_at")
    list_filter = ("status", "stop_suggested", "features", "strategy")
    search_fields = ("version", "mlflow_run_id")
    readonly_fields = [f.name for f in ModelVersion._meta.fields if f.name != "stop_predictions"]
    exclude = ("stop_predictions",)

    @admin.display(description="κ to previous", ordering="stop_kappa")
    def kappa(self, version: ModelVersion) -> str:
        return "-" if version.stop_kappa is None else f"{version.stop_kappa:.3f}"

    @admin.display(description="stop?", boolean=True, ordering="stop_suggested")
    def stop(self, version: ModelVersion) -> bool:
        return version.stop_suggested

    @admin.display(description="macro-F1 (CV)")
    def macro_f1(self, version: ModelVersion) -> str:
        value = (version.metrics or {}).get("macro_f1")
        return "-" if value is None else f"{value:.3f}"


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("action", "ls_project_id", "cancelled", "received_at", "processed_at")
    list_filter = ("action", "cancelled")
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]


@admin.register(ScoringRun)
class ScoringRunAdmin(admin.ModelAdmin):
    list_display = ("pk", "project", "tag", "mode", "strategy", "trigger", "status", "done", "total", "attempts",
                    "started_at", "switched_at", "finished_at")
    list_filter = ("status", "mode", "trigger")
    search_fields = ("project__ls_project_id", "tag", "error")
    readonly_fields = [f.name for f in ScoringRun._meta.fields]
