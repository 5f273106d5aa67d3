"""Selectors: functions that read the active-learning domain for views, jobs and the admin. They never write."""
from __future__ import annotations

from typing import Any

from backends.label_config import config_digest
from orchestrator.learning.model_cache import Predictor, model_cache
from orchestrator.learning.models import COLD_START_VERSION, ModelVersion, Project, ScoringPolicy, TrainingPolicy
from orchestrator.learning.project_keys import parse_project_key


def training_policy(project: Project) -> TrainingPolicy:
    """The project's training policy; the defaults (unsaved) for a project without one."""
    return TrainingPolicy.objects.filter(project=project).first() or TrainingPolicy(project=project)


def scoring_policy(project: Project) -> ScoringPolicy:
    """The project's scoring policy; the defaults (unsaved) for a project without one."""
    return ScoringPolicy.objects.filter(project=project).first() or ScoringPolicy(project=project)


def cached_predictor(*, project_key: Any, label_config: str | None) -> Predictor | None:
    """The predictor a /predict call gets, from this process's cache when fresh.

    None when the project is unknown here or the call carries another label config than the
    one the predictor answers: the call registers or updates the project first
    (`predictions.predictor_for_request`).
    """
    found = model_cache.predictor(parse_project_key(project_key))
    if found is not None and (not label_config or _same_config(found, label_config)):
        return found
    return None


def _same_config(found: Predictor, label_config: str) -> bool:
    # Comparing the text first avoids hashing a long config on every request.
    return found.backend.config.xml == label_config or found.backend.config.digest == config_digest(label_config)


def versions(*, project_key: Any = None) -> dict[str, Any]:
    """Versions for Label Studio's dropdown, newest first.

    Label Studio's GET /versions carries no project, so without one this lists every
    project's versions (their names start with the project id: "p3-v2").
    """
    queryset = ModelVersion.objects.exclude(status=ModelVersion.Status.FAILED).select_related("project")
    projects = Project.objects.all()
    if project_key not in (None, ""):
        ls_project_id = parse_project_key(project_key)
        queryset = queryset.filter(project__ls_project_id=ls_project_id)
        projects = projects.filter(ls_project_id=ls_project_id)
    names = [v.version for v in queryset.order_by("-created_at")]
    current = [model_cache.announced_version(p) for p in projects.select_related("serving_version")]
    if COLD_START_VERSION in current or not names:
        names.append(COLD_START_VERSION)
    return {"versions": names, "current_versions": current}


def learning_curve(project: Project) -> list[dict[str, Any]]:
    """One point per trained version, oldest first: what an admin page or the API plots.

    Annotations used, the unbiased macro-F1 estimate on the audit sample with its 90% interval and
    how many audit labels it rests on, the cross-validated metrics (on the labelled set: biased), the agreement with the previous version
    on the stop set (kappa) and whether the stopping rule fired, the strategy that chose
    the annotations, and whether the version served.
    """
    rows = (ModelVersion.objects.filter(project=project)
            .exclude(status__in=[ModelVersion.Status.TRAINING, ModelVersion.Status.FAILED])
            .order_by("created_at", "pk"))
    return [{
        "version": v.version,
        "status": v.status,
        "annotations": v.num_annotations,
        "estimate": v.metrics.get("audit_macro_f1"),  # unbiased: the audit sample (learning/audit.py)
        "estimate_low": v.metrics.get("audit_macro_f1_low"),
        "estimate_high": v.metrics.get("audit_macro_f1_high"),
        "audit_labels": v.metrics.get("audit_labels"),
        "macro_f1": v.metrics.get("macro_f1"),  # cross-validated on the labelled set: biased toward hard tasks
        "accuracy": v.metrics.get("accuracy"),
        "kappa": v.stop_kappa,
        "stop_suggested": v.stop_suggested,
        "strategy": v.strategy,
        "features": v.features,
        "trained_at": v.finished_at.isoformat() if v.finished_at else None,
    } for v in rows.defer("stop_predictions")]
