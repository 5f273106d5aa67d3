"""Selectors: functions that read the active-learning domain for views and jobs."""
from __future__ import annotations

from typing import Any

from orchestrator.learning.models import COLD_START_VERSION, ModelVersion, Project
from orchestrator.learning.serving import Serving, registry
from orchestrator.learning.services.projects import parse_project_key, project_for_predict


def serving_for_predict(*, project_key: Any, label_config: str | None) -> Serving:
    """The serving snapshot for a /predict call, from the in-process cache when fresh."""
    ls_project_id = parse_project_key(project_key)
    serving = registry.get(ls_project_id)
    if serving is not None and (not label_config or _same_config(serving, label_config)):
        return serving
    return registry.for_project(project_for_predict(project_key=project_key, label_config=label_config))


def _same_config(serving: Serving, label_config: str) -> bool:
    # Comparing the text first avoids hashing a long config on every request.
    return serving.backend.config.xml == label_config or serving.backend.config.digest == _digest(label_config)


def _digest(xml: str) -> str:
    from backends.label_config import config_digest

    return config_digest(xml)


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
    current = [registry.announced_version(p) for p in projects.select_related("serving")]
    if COLD_START_VERSION in current or not names:
        names.append(COLD_START_VERSION)
    return {"versions": names, "current_versions": current}
