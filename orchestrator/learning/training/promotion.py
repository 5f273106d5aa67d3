"""Whether a new version serves, and the act of serving it: the database, MLflow's alias, a push.

The rule is the project's training policy (`promotion`): `always`, or `if_not_worse`
(unless cross-validated macro-F1 drops by more than `max_macro_f1_drop`).
"""
from __future__ import annotations

import logging

from django.db import transaction

from orchestrator.gateways import mlflow_store
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.models import ModelVersion, Project, ScoringRun, ServingHistory, TrainingPolicy
from orchestrator.learning.scoring import runs

logger = logging.getLogger(__name__)


def should_promote(policy: TrainingPolicy, new: dict[str, float], serving: dict[str, float] | None) -> tuple[bool, str]:
    """The promotion policy: always, or unless cross-validated macro-F1 drops by more than the margin."""
    if policy.promotion == TrainingPolicy.Promotion.ALWAYS or serving is None:
        return True, ""
    if "macro_f1" not in new or "macro_f1" not in serving:
        return True, "promoted: too few annotations to compare macro-F1"
    drop = serving["macro_f1"] - new["macro_f1"]
    if drop > policy.max_macro_f1_drop:
        return False, (f"kept the serving version: macro-F1 {new['macro_f1']:.4f} is {drop:.4f} below "
                       f"{serving['macro_f1']:.4f} (allowed drop {policy.max_macro_f1_drop})")
    return True, ""


def promote_if_allowed(*, version: ModelVersion, policy: TrainingPolicy,
                       serving_metrics: dict[str, float] | None) -> tuple[bool, str]:
    """Serve `version` if the policy lets it replace the version with `serving_metrics`; whether, and why."""
    promote, why = should_promote(policy, version.metrics, serving_metrics)
    if promote:
        promote_version(version=version, request_push=True)
    return promote, why


def promote_version(*, version: ModelVersion, request_push: bool,
                    history: list[int] | None = None) -> ScoringRun | None:
    """Make `version` the one its project serves (database and MLflow alias); the previous one
    goes back to ready (a roll back may serve it again; only an operator retires a version) and
    is recorded in the project's serving history, unless `history` is given: a roll back (an undo)
    sets the history to what is left of it.

    With `request_push`, then asks for a push of its scores to Label Studio (queued; the
    project's scoring policy may have turned automatic pushes off); a failure to ask is
    logged and never undoes the promotion. Returns the scoring run asked for, if any.
    """
    project = version.project
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        previous_id = locked.serving_version_id
        if previous_id and previous_id != version.pk:
            ModelVersion.objects.filter(pk=previous_id, status=ModelVersion.Status.SERVING).update(
                status=ModelVersion.Status.READY)
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.SERVING)
        locked.serving_version = version
        locked.save(update_fields=["serving_version", "updated_at"])
        past, _ = ServingHistory.objects.select_for_update().get_or_create(project=locked)
        if history is not None:
            past.replaced = list(history)
        elif previous_id and previous_id != version.pk:
            past.replaced = [*past.replaced, previous_id][-ServingHistory.KEEP:]
        past.save(update_fields=["replaced"])
    version.status = ModelVersion.Status.SERVING
    if version.mlflow_model_name:
        mlflow_store.set_serving_alias(name=version.mlflow_model_name, version=version.mlflow_model_version)
    model_cache.forget(project.ls_project_id)
    if not request_push:
        return None
    try:
        return runs.request_push(version)
    except Exception:
        logger.exception("scoring_not_requested project=%s version=%s", project.ls_project_id, version.version)
        return None
