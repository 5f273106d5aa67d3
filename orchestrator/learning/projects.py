"""Register and update the Label Studio projects that call the service."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from backends import backend_for, parse_label_config
from backends.label_config import config_digest
from orchestrator.learning import annotation_store, webhook_auth
from orchestrator.learning.extra_params import (
    SCORING_FIELDS,
    features_from,
    parse_extra_params,
    policy_from,
    strategy_from,
)
from orchestrator.learning.models import Project, RefusedConnection, ScoringPolicy, TrainingPolicy
from orchestrator.learning.project_keys import ProjectKeyError, parse_project_key, shown
from orchestrator.learning.scoring import runs as scoring_runs

__all__ = ["ProjectKeyError", "parse_project_key", "project_for_predict", "record_setup_refusal", "setup_project",
           "shown"]


def setup_project(
    *, project_key: Any, label_config: str, extra_params: Any = None, hostname: str = ""
) -> Project:
    """Validate the label config and remember the project; write only what changed.

    Label Studio calls /setup before every batch of predictions, so this must stay cheap.
    A project seen for the first time gets the cold start's order pushed (scoring/runs.py).
    """
    ls_project_id = parse_project_key(project_key)
    config = parse_label_config(label_config)
    backend = backend_for(config)  # raises LabelConfigError naming the tags when unsupported
    extra = parse_extra_params(extra_params)
    strategy = strategy_from(extra)
    features = features_from(extra)
    policy = policy_from(extra)
    scoring_policy = policy_from(extra, "scoring", SCORING_FIELDS)
    wanted: dict[str, Any] = {
        "ls_project_key": str(project_key)[:64],
        "label_config": label_config,
        "label_config_digest": config.digest,
        "backend": backend.name,
        "extra_params": extra,
        "ls_hostname": (hostname or "")[:500],
    }
    if strategy is not None:
        wanted["strategy"] = strategy
    if features is not None:
        wanted["features"] = features
    project = Project.objects.select_related("serving_version").filter(ls_project_id=ls_project_id).first()
    if project is None:
        try:
            with transaction.atomic():
                project = Project.objects.create(ls_project_id=ls_project_id, last_setup_at=timezone.now(), **wanted)
                TrainingPolicy.objects.create(project=project, **(policy or {}))
                ScoringPolicy.objects.create(project=project, **(scoring_policy or {}))
            RefusedConnection.objects.filter(ls_project_id=ls_project_id).delete()  # connected now
            scoring_runs.request_cold_start(project)  # the queue ordered before the first model
            webhook_auth.request_ensure(project.pk)
            annotation_store.request_sync(project.pk)  # its annotations read once, before the first training
            return project
        except IntegrityError:  # a concurrent /setup created it first
            project = Project.objects.select_related("serving_version").get(ls_project_id=ls_project_id)
    if project.last_setup_error:
        wanted["last_setup_error"] = ""
    changed = [field for field, value in wanted.items() if getattr(project, field) != value]
    for field in changed:
        setattr(project, field, wanted[field])
    if changed:
        project.save(update_fields=[*changed, "updated_at"])
    if policy and "extra_params" in changed:
        # Only when the extra params change: edits made in the admin since then stay.
        TrainingPolicy.objects.update_or_create(project=project, defaults=policy)
    if scoring_policy and "extra_params" in changed:
        ScoringPolicy.objects.update_or_create(project=project, defaults=scoring_policy)
    webhook_auth.request_ensure(project.pk)  # a reconnection: its webhook may be new and unsigned
    return project


def project_for_predict(*, project_key: Any, label_config: str | None,
                        tasks: Sequence[Mapping[str, Any]] = ()) -> Project:
    """The project a /predict call is for; registers it if /setup never ran (interactive calls).

    A /predict that carries another label config than the stored one updates it: Label
    Studio is the authority on its project's config. Its `tasks` are checked against that
    config first, so a refused call registers and changes nothing.
    """
    ls_project_id = parse_project_key(project_key)
    project = Project.objects.select_related("serving_version").filter(ls_project_id=ls_project_id).first()
    if project is not None and (not label_config or config_digest(label_config) == project.label_config_digest):
        return project
    if not label_config:
        raise ProjectKeyError(
            f"project {ls_project_id} is unknown here and the request has no label_config: call /setup first"
        )
    backend_for(parse_label_config(label_config)).check_tasks(tasks)  # TaskDataError names the task
    return setup_project(project_key=project_key, label_config=label_config,
                         extra_params=project.extra_params if project else None,
                         hostname=project.ls_hostname if project else "")


def remember_title(project: Project, title: Any) -> None:
    """Keep the project's title as Label Studio last showed it (/setup does not send it)."""
    title = str(title or "")[:255]
    if title and title != project.title:
        Project.objects.filter(pk=project.pk).update(title=title)
        project.title = title


def record_setup_refusal(*, project_key: Any, reason: str, hostname: str = "") -> Project | None:
    """A refused /setup: its reason kept on the project if it is known, else as a refused connection
    (the console lists both until a /setup of the project is accepted). Returns the known project."""
    try:
        ls_project_id = parse_project_key(project_key)
    except ProjectKeyError:
        return None
    project = Project.objects.filter(ls_project_id=ls_project_id).first()
    now = timezone.now()
    if project is not None:
        Project.objects.filter(pk=project.pk).update(last_setup_error=reason[:5000], last_setup_error_at=now)
        return project
    row, created = RefusedConnection.objects.get_or_create(ls_project_id=ls_project_id, defaults={
        "reason": reason[:5000], "hostname": (hostname or "")[:500], "refused_at": now})
    if not created:
        RefusedConnection.objects.filter(pk=row.pk).update(reason=reason[:5000], hostname=(hostname or "")[:500],
                                                           refused_at=now, times=F("times") + 1)
    return None
