"""Django admin for projects, model versions and received events."""
from django.contrib import admin

from orchestrator.learning.models import ModelVersion, Project, WebhookEvent


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ("version", "status", "num_annotations", "metrics", "mlflow_run_id", "created_at")
    readonly_fields = fields
    can_delete = False
    show_change_link = True


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("ls_project_id", "title", "backend", "strategy", "serving", "last_setup_at", "updated_at")
    search_fields = ("ls_project_id", "title")
    readonly_fields = ("ls_project_key", "label_config_digest", "backend", "ls_hostname", "serving",
                       "created_at", "updated_at", "last_setup_at")
    inlines = [ModelVersionInline]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("version", "project", "status", "num_annotations", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("version", "mlflow_run_id")
    readonly_fields = [f.name for f in ModelVersion._meta.fields]


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("action", "ls_project_id", "cancelled", "received_at", "processed_at")
    list_filter = ("action", "cancelled")
    readonly_fields = [f.name for f in WebhookEvent._meta.fields]
