"""Data of the active-learning domain: Label Studio projects, model versions, received events.
Models hold data and invariants; workflows live in `services`."""
from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from backends.features import FEATURE_SETS
from orchestrator.learning.extra_params import POLICY_BOUNDS
from orchestrator.learning.triggers import (SCORING_TRIGGERS, SCORING_TRIGGERS_HELP, TRAINING_TRIGGERS,
                                            TRAINING_TRIGGERS_HELP)

COLD_START_VERSION = "cold-start"


def validate_strategy_name(value: str) -> None:
    import strategies

    if value not in strategies.names():
        raise ValidationError(f"unknown strategy {value!r}; known: {', '.join(strategies.names())}")


def default_strategy() -> str:
    return settings.DEFAULT_STRATEGY


def default_features() -> str:
    return settings.DEFAULT_FEATURES


class Project(models.Model):
    """A Label Studio project that uses this service as its model."""

    ls_project_id = models.PositiveIntegerField(unique=True, help_text="The project's id in Label Studio.")
    ls_project_key = models.CharField(
        max_length=64, blank=True,
        help_text="What Label Studio sends as its project: the id, a dot, and the project's creation time.",
    )
    title = models.CharField(max_length=255, blank=True)
    label_config = models.TextField()
    label_config_digest = models.CharField(max_length=16)
    backend = models.CharField(max_length=64, default="text_classification")
    strategy = models.CharField(
        max_length=64, default=default_strategy, validators=[validate_strategy_name],
        help_text="Query strategy that turns model probabilities into labelling priority.",
    )
    features = models.CharField(
        max_length=32, default=default_features, choices=[(name, f"{name}: {what}") for name, what in FEATURE_SETS.items()],
        help_text="What the next model versions learn from. A version keeps the features it was trained on.",
    )
    strategy_params = models.JSONField(default=dict, blank=True)
    extra_params = models.JSONField(null=True, blank=True, help_text='The connection form\'s "Extra params".')
    ls_hostname = models.CharField(
        max_length=500, blank=True,
        help_text="The hostname Label Studio reported in /setup; recorded only, never called.",
    )
    serving_version = models.ForeignKey(
        "ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="The version /setup and /predict answer with, and pushes score with; none means cold start.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_setup_at = models.DateTimeField(null=True, blank=True)
    last_setup_error = models.TextField(
        blank=True, help_text="Why the last refused connection (/setup) was refused; cleared by the next accepted one.")
    last_setup_error_at = models.DateTimeField(null=True, blank=True)
    # Training loop bookkeeping (see training/): when the next check is
    # scheduled, and the lease that makes at most one training run per project at a time.
    training_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    training_lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    training_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    # The same for scoring (scoring/): one scoring job per project at a time.
    scoring_lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    scoring_lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["ls_project_id"]

    def __str__(self) -> str:
        return f"project {self.ls_project_id}" + (f" ({self.title})" if self.title else "")

    def usable_serving_version(self) -> ModelVersion | None:
        """The serving version if it can answer the current label config (trained on it, and
        registered): what /predict answers with and a push scores with. None: cold start (a
        model trained on another label config cannot answer this one until retrained)."""
        version = self.serving_version
        if version is None or not version.model_uri or version.label_config_digest != self.label_config_digest:
            return None
        return version


class ModelVersion(models.Model):
    """One trained model of a project, mirrored from the MLflow Model Registry."""

    class Status(models.TextChoices):
        TRAINING = "training", "training"
        READY = "ready", "ready"
        FAILED = "failed", "failed"
        SERVING = "serving", "serving"
        RETIRED = "retired", "retired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=100, help_text="What Label Studio sees as model_version.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING, help_text=(
        "serving: /predict and pushes use it; ready: trained and can serve (a promotion or a roll back); "
        "retired: an operator took it out of use (a roll back skips it); failed: its training failed."))
    label_config_digest = models.CharField(max_length=16)
    features = models.CharField(max_length=32, default="tfidf", help_text="What this version learned from.")
    mlflow_run_id = models.CharField(max_length=64, blank=True)
    mlflow_model_name = models.CharField(max_length=255, blank=True)
    mlflow_model_version = models.CharField(max_length=32, blank=True)
    model_uri = models.CharField(max_length=500, blank=True, help_text="Where the model cache loads it from (MLflow).")
    metrics = models.JSONField(default=dict, blank=True)
    num_annotations = models.PositiveIntegerField(default=0)
    data_digest = models.CharField(
        max_length=64, blank=True, help_text="Digest of the label config and the annotations (ids and revisions) it learned.",
    )
    error = models.TextField(blank=True)
    strategy = models.CharField(max_length=64, blank=True, help_text="The project's strategy when it was trained.")
    # Stabilizing predictions (stopping.py): its labels on the project's stop set, the agreement
    # with the previous version's, and whether the rule suggests stopping with it.
    stop_set = models.ForeignKey("StopSet", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    stop_predictions = models.BinaryField(null=True, blank=True, editable=False)
    stop_kappa = models.FloatField(
        null=True, blank=True, verbose_name="kappa to previous",
        help_text="Cohen's kappa between its stop-set predictions and the previous version's.")
    stop_suggested = models.BooleanField(
        default=False, help_text="The mean kappa of the last 3 versions reached the training policy's stop_kappa: "
                                 "more labels barely change the model's predictions.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["project", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["project", "version"], name="unique_version_per_project")]

    def __str__(self) -> str:
        return f"{self.version} ({self.status})"


def bounded(name: str) -> list:
    """Validators of a policy number's range (extra_params.POLICY_BOUNDS)."""
    low, high = POLICY_BOUNDS[name]
    return [MinValueValidator(low), MaxValueValidator(high)]


class TrainingPolicy(models.Model):
    """When a project's annotations lead to a new model version, and whether it serves."""

    class Promotion(models.TextChoices):
        ALWAYS = "always", "always serve the new version"
        IF_NOT_WORSE = "if_not_worse", "serve it unless surely worse on the audit sample by more than the margin"

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="training_policy")
    auto_train = models.BooleanField(
        default=True, help_text="Train on annotation events. Off: only Start Training (and manual runs) train.",
    )
    min_annotations = models.PositiveIntegerField(
        default=10, validators=bounded("min_annotations"),
        help_text="No automatic training before the project has this many annotations.",
    )
    retrain_every = models.PositiveIntegerField(
        default=25, validators=bounded("retrain_every"),
        help_text="Train as soon as this many annotation changes are pending (0: off).",
    )
    quiet_seconds = models.FloatField(
        default=20.0, validators=bounded("quiet_seconds"),
        help_text="Train when annotation changes are pending and none came for this long (0: off).",
    )
    promotion = models.CharField(max_length=16, choices=Promotion.choices, default=Promotion.ALWAYS)
    max_macro_f1_drop = models.FloatField(default=0.02, validators=bounded("max_macro_f1_drop"), help_text=(
        "With if_not_worse: the largest drop of the audit estimate of macro-F1 still promoted (a larger "
        "one keeps the serving version only when its whole 90% interval is below zero)."))
    stop_kappa = models.FloatField(
        default=0.99, validators=bounded("stop_kappa"),
        help_text="Suggest stopping when the mean kappa of the last 3 versions on the stop set reaches this "
                  "(0.99: Bloodgood & Vijay-Shanker 2009; lower stops earlier).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "training policies"

    def __str__(self) -> str:
        return f"training policy of {self.project}"


class TrainingRun(models.Model):
    """One training job of a project: what triggered it, what it read, what it produced."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"
        CANCELLED = "cancelled"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    trigger = models.CharField(max_length=32, choices=TRAINING_TRIGGERS, help_text=TRAINING_TRIGGERS_HELP)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    events_through = models.BigIntegerField(default=0, help_text="Covers pending events up to this id.")
    num_events = models.PositiveIntegerField(default=0)
    num_annotations = models.PositiveIntegerField(default=0)
    ls_annotation_count = models.PositiveIntegerField(
        null=True, blank=True, help_text="Label Studio's annotation count when the run read the data.",
    )
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    promoted = models.BooleanField(default=False)
    detail = models.TextField(blank=True, help_text="Why it was skipped, not promoted, or failed.")
    owner = models.CharField(max_length=64, blank=True, help_text="The lease owner (worker) that ran it.")
    cancel_requested_by = models.CharField(
        max_length=150, blank=True, help_text="Who asked to cancel it: the run stops before its next phase.")
    timings = models.JSONField(
        default=dict, blank=True, help_text="Seconds spent reading from Label Studio, cross-validating, fitting, "
                                            "predicting the stop set, and logging to MLflow.",
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"training of {self.project} ({self.status})"

    @property
    def seconds(self) -> float | None:
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None


class ScoringPolicy(models.Model):
    """How a project's unlabeled tasks are scored and pushed to Label Studio."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="scoring_policy")
    auto_push = models.BooleanField(
        default=True, help_text="Score and push every unlabeled task when a new version starts serving, "
                                "and score tasks Label Studio reports as created.",
    )
    view_title = models.CharField(
        max_length=100, default="Active learning queue",
        help_text="The Data Manager tab the service keeps ordered most informative first (blank: none).",
    )
    uncertainty_sampling = models.BooleanField(
        default=True, help_text='Set the project\'s sampling to "Uncertainty sampling", so "Label All Tasks" '
                                "also serves the most informative task next.",
    )
    chunk_size = models.PositiveIntegerField(
        default=5000, validators=bounded("chunk_size"),
        help_text="Most predictions per bulk import request. Requests start at 500 (or this, if "
                                "smaller) and grow while Label Studio answers within seconds.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "scoring policies"

    def __str__(self) -> str:
        return f"scoring policy of {self.project}"


class ScoringRun(models.Model):
    """One scoring job: predictions of one version pushed to a project's unlabeled tasks.

    `tag` is the `model_version` the predictions carry in Label Studio. A run first scores
    its pool (every unlabeled task with an id above `high_water`: all of them for a full
    run, the ones created since the last push for an incremental one), then pushes it most
    informative first. A full run tags predictions with a tag no task carries yet, makes it
    the project's `model_version` as soon as the first chunk landed (tasks not pushed yet
    have no score and sort last), and deletes the service's older tags once it completed.
    Progress is kept chunk by chunk (`cursor`: a position in the stored pool), so a rerun
    resumes where a failure stopped it.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SUPERSEDED = "superseded"
        CANCELLED = "cancelled"

    class Mode(models.TextChoices):
        FULL = "full"
        INCREMENTAL = "incremental"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="scoring_runs")
    model_version = models.ForeignKey(
        ModelVersion, null=True, on_delete=models.SET_NULL, related_name="scoring_runs",
        help_text="The version it scores with; none: the cold start's order (before any usable model).")
    tag = models.CharField(max_length=120, verbose_name="push tag",
                           help_text="The model_version the pushed predictions carry in Label Studio.")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.FULL)
    strategy = models.CharField(max_length=64)
    trigger = models.CharField(max_length=32, choices=SCORING_TRIGGERS, help_text=SCORING_TRIGGERS_HELP)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    total = models.PositiveIntegerField(default=0, help_text="Unlabeled tasks to score (the pools read so far).")
    done = models.PositiveIntegerField(default=0, help_text="Tasks that carry the tag so far.")
    cursor = models.BigIntegerField(
        default=0, help_text="Position in the stored pool (most informative first) up to which every task has the tag.",
    )
    inflight_through = models.BigIntegerField(
        default=0, help_text="Pool positions up to this were sent; whether they landed is checked on resume.",
    )
    high_water = models.BigIntegerField(default=0, help_text="The highest task id this run's pools reached.")
    attempts = models.PositiveIntegerField(default=0, help_text="Executions of this run (resumes included).")
    owner = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds spent reading, scoring and pushing.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    switched_at = models.DateTimeField(
        null=True, blank=True, help_text="When Label Studio started sorting by this run's tag (after its first chunk).",
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["project", "status"], name="scoring_run_status_idx")]

    def __str__(self) -> str:
        return f"scoring {self.tag} of {self.project} ({self.status})"

    @property
    def cold_start(self) -> bool:
        """A push of the cold start's order (no model yet): its tag is `cold-start` or `cold-start.<n>`."""
        return self.tag == COLD_START_VERSION or self.tag.startswith(COLD_START_VERSION + ".")


class ScoringPool(models.Model):
    """A run's scored pool in push order: task ids, probabilities and priorities (compressed numpy).

    Kept apart from the run so listing runs never reads it; deleted once fully pushed.
    About 24 bytes per task for a two-class model: 2.4 MB at 100k tasks (less compressed).
    """

    run = models.OneToOneField(ScoringRun, on_delete=models.CASCADE, primary_key=True, related_name="pool")
    size = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"pool of {self.size} tasks for run {self.run_id}"


class ColdStart(models.Model):
    """A project's order before its first model: k-means centres of its pool's text vectors
    (strategies/cold_start.py, compressed numpy). /predict and pushes place every task by it."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, primary_key=True, related_name="cold_start")
    vectors = models.CharField(max_length=32, help_text="The pretrained vectors the texts were placed with.")
    clusters = models.PositiveIntegerField()
    num_tasks = models.PositiveIntegerField(help_text="Unlabeled tasks of the pool it was fitted to.")
    data = models.BinaryField()
    fitted_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"cold start of {self.project} ({self.clusters} clusters over {self.num_tasks} tasks)"


class StopSet(models.Model):
    """A project's fixed sample of unlabeled tasks that successive versions are compared on
    (stopping.py): task ids and texts, compressed JSON."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="stop_set")
    size = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"stop set of {self.project} ({self.size} tasks)"


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
        indexes = [models.Index(fields=["project", "processed_at"], name="event_pending_idx")]

    def __str__(self) -> str:
        return f"{self.action} project={self.ls_project_id}"


# The annotation store's, task mirror's, clean-up's and serving history's tables: modules of their own.
from orchestrator.learning.cleanup_models import PredictionCleanup  # noqa: E402, F401
from orchestrator.learning.refusal_models import RefusedConnection  # noqa: E402, F401
from orchestrator.learning.serving_models import ServingHistory  # noqa: E402, F401
from orchestrator.learning.store_models import (  # noqa: E402, F401
    AnnotationStoreState, MirroredTask, StoredAnnotation, StoredTask, TaskMirrorState)
