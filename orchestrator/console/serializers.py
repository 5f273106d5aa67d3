"""The management API's contract: what each endpoint reads and answers."""
from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers

from orchestrator.learning import steering
from orchestrator.learning.models import ModelVersion, Project, ScoringRun, TrainingRun


class ModelVersionSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project.ls_project_id", read_only=True)
    serving = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ("id", "project", "version", "status", "serving", "features", "strategy", "num_annotations",
                  "metrics", "stop_kappa", "stop_suggested", "mlflow_run_id", "mlflow_model_name",
                  "mlflow_model_version", "error", "created_at", "finished_at")
        read_only_fields = fields

    def get_serving(self, version: ModelVersion) -> bool:
        return version.project.serving_version_id == version.pk


class Strict:
    """A request body's fields, all known: a misspelt or renamed field is a 400 naming it, never ignored."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            known = sorted(name for name, field in self.fields.items() if not field.read_only)
            unknown = sorted(str(name) for name in data if name not in known)
            if unknown:
                raise serializers.ValidationError({unknown[0]: [
                    f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; this endpoint takes "
                    f"{', '.join(known)}"]})
        return super().to_internal_value(data)


class TrainSerializer(Strict, serializers.Serializer):
    even_if_unchanged = serializers.BooleanField(
        default=False, help_text="Train a new version even on the annotations the latest version learned.")


class ScheduleSerializer(Strict, serializers.Serializer):
    kind = serializers.ChoiceField(choices=["off", "hours", "crontab"])
    every_hours = serializers.FloatField(required=False, allow_null=True,
                                         help_text="With kind=hours: between 1/60 and 8784.")
    crontab = serializers.CharField(required=False, allow_blank=True,
                                    help_text='With kind=crontab: five fields, e.g. "0 2 * * *" (UTC).')
    enabled = serializers.BooleanField(read_only=True)
    describe = serializers.CharField(read_only=True)

    def validate(self, data):
        try:
            data["schedule"] = steering.parse_schedule(kind=data["kind"], every_hours=data.get("every_hours"),
                                                       crontab=data.get("crontab") or "")
        except steering.SettingError as error:
            raise serializers.ValidationError({error.field or "kind": str(error)}) from None
        return data


def schedule_data(schedule: steering.Schedule) -> dict:
    return {"kind": schedule.kind, "every_hours": schedule.every_hours, "crontab": schedule.crontab,
            "enabled": schedule.enabled, "describe": schedule.describe()}


class ProjectSerializer(serializers.ModelSerializer):
    serving_version = serializers.CharField(source="serving_version.version", default=None, read_only=True)
    schedule = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ("ls_project_id", "title", "backend", "strategy", "strategy_params", "features", "serving_version",
                  "schedule", "last_setup_at", "last_setup_error", "last_setup_error_at", "created_at", "updated_at")
        read_only_fields = fields

    def get_schedule(self, project: Project) -> ScheduleSerializer:
        return schedule_data(steering.schedule_of(project))


class StrategySerializer(Strict, serializers.Serializer):
    strategy = serializers.CharField(help_text="A registered strategy name (GET /api/strategies/).")
    strategy_params = serializers.DictField(required=False, default=dict,
                                            help_text="The strategy's options (as the project reads them back).")
    rescore = serializers.BooleanField(required=False, default=True,
                                       help_text="Re-score the queue with the serving version (default).")


class StrategyInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    kind = serializers.CharField()
    options = serializers.ListField(child=serializers.CharField())


class ScoringRunSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project.ls_project_id", read_only=True)
    model_version = serializers.CharField(source="model_version.version", default=None, read_only=True)

    class Meta:
        model = ScoringRun
        fields = ("id", "project", "model_version", "tag", "mode", "strategy", "trigger", "status", "done", "total",
                  "attempts", "error", "timings", "created_at", "started_at", "switched_at", "finished_at")
        read_only_fields = fields


class TrainingRunSerializer(serializers.ModelSerializer):
    project = serializers.IntegerField(source="project.ls_project_id", read_only=True)
    model_version = serializers.CharField(source="model_version.version", default=None, read_only=True)

    class Meta:
        model = TrainingRun
        fields = ("id", "project", "trigger", "status", "num_events", "num_annotations", "model_version", "promoted",
                  "detail", "cancel_requested_by", "timings", "started_at", "finished_at")
        read_only_fields = fields


class LearningCurvePointSerializer(serializers.Serializer):
    version = serializers.CharField()
    status = serializers.CharField()
    annotations = serializers.IntegerField()
    estimate = serializers.FloatField(allow_null=True, help_text=(
        "Macro-F1 estimated on the audit sample (tasks drawn at random, never trained on): unbiased."))
    estimate_low = serializers.FloatField(allow_null=True, help_text="The estimate's 90% interval, lower end.")
    estimate_high = serializers.FloatField(allow_null=True, help_text="The estimate's 90% interval, upper end.")
    audit_labels = serializers.FloatField(allow_null=True, help_text="How many audit labels the estimate rests on.")
    macro_f1 = serializers.FloatField(allow_null=True, help_text=(
        "Cross-validated on the labelled set: biased toward the hard tasks the queue picks."))
    accuracy = serializers.FloatField(allow_null=True, help_text="Cross-validated on the labelled set: biased.")
    kappa = serializers.FloatField(allow_null=True)
    stop_suggested = serializers.BooleanField()
    strategy = serializers.CharField()
    features = serializers.CharField()
    trained_at = serializers.CharField(allow_null=True)


class OutcomeSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What was done, in words.")
    scoring_run = serializers.IntegerField(allow_null=True, required=False)
    event = serializers.IntegerField(allow_null=True, required=False)
    serving_version = serializers.CharField(allow_null=True, required=False)
