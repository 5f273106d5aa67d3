"""Data of the active-learning domain: Label Studio projects, model versions, received events.

Models hold data and invariants; workflows live in `services`.
"""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

COLD_START_VERSION = "cold-start"


def validate_strategy_name(value: str) -> None:
    import strategies

    if value not in strategies.names():
        raise ValidationError(f"unknown strategy {value!r}; known: {', '.join(strategies.names())}")


class Project(models.Model):
    """A Label Studio project that uses this service as its model."""

    ls_project_id = models.PositiveIntegerField(unique=True, help_text="The project's id in Label Studio.")
    ls_project_key = models.CharField(
        max_length=64, blank=True, help_text='What Label Studio sends as "project": "<id>.<created_at>".'
    )
    title = models.CharField(max_length=255, blank=True)
    label_config = models.TextField()
    label_config_digest = models.CharField(max_length=16)
    backend = models.CharField(max_length=64, default="text_classification")
    strategy = models.CharField(
        max_length=64, default=settings.DEFAULT_STRATEGY, validators=[validate_strategy_name],
        help_text="Query strategy that turns model probabilities into labelling priority.",
    )
    strategy_params = models.JSONField(default=dict, blank=True)
    extra_params = models.JSONField(null=True, blank=True, help_text='The connection form\'s "Extra params".')
    ls_hostname = models.CharField(
        max_length=500, blank=True,
        help_text="The hostname Label Studio reported in /setup; recorded only, never called.",
    )
    serving = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The version /setup and /predict answer with; none means cold start.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_setup_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["ls_project_id"]

    def __str__(self) -> str:
        return f"project {self.ls_project_id}" + (f" ({self.title})" if self.title else "")


class ModelVersion(models.Model):
    """One trained model of a project, mirrored from the MLflow Model Registry."""

    class Status(models.TextChoices):
        TRAINING = "training"
        READY = "ready"
        FAILED = "failed"
        SERVING = "serving"
        RETIRED = "retired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=100, help_text="What Label Studio sees as model_version.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    label_config_digest = models.CharField(max_length=16)
    mlflow_run_id = models.CharField(max_length=64, blank=True)
    mlflow_model_name = models.CharField(max_length=255, blank=True)
    mlflow_model_version = models.CharField(max_length=32, blank=True)
    model_uri = models.CharField(max_length=500, blank=True, help_text="Where the serving layer loads it from.")
    metrics = models.JSONField(default=dict, blank=True)
    num_annotations = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="unique_version_per_project")]

    def __str__(self) -> str:
        return f"{self.version} ({self.status})"


class WebhookEvent(models.Model):
    """An event Label Studio sent to /webhook (or /train), kept in a compact form."""

    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    ls_project_id = models.PositiveIntegerField(null=True, blank=True, db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    annotation_ids = models.JSONField(default=list, blank=True)
    task_ids = models.JSONField(default=list, blank=True)
    cancelled = models.BooleanField(default=False, help_text="A skip (was_cancelled annotation).")
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.action} project={self.ls_project_id}"
