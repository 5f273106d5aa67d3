"""Register and update the Label Studio projects that call the service."""
from __future__ import annotations

import json
import re
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

import strategies
from backends import backend_for, parse_label_config
from backends.label_config import config_digest
from orchestrator.learning.models import Project, TrainingPolicy

PROJECT_KEY = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*$")


class ProjectKeyError(ValueError):
    """Label Studio's `project` field is not "<id>.<timestamp>"."""


class StrategyError(ValueError):
    """Extra params name a query strategy that does not exist."""


class PolicyError(ValueError):
    """Extra params set a training policy field wrongly."""


# Training policy fields that Label Studio's "Extra params" may set: {"training": {...}}.
POLICY_FIELDS = {
    "auto_train": bool, "min_annotations": int, "retrain_every": int, "quiet_seconds": float,
    "promotion": str, "max_macro_f1_drop": float,
}


def _policy_from(extra: dict[str, Any] | None) -> dict[str, Any] | None:
    if not extra or "training" not in extra:
        return None
    wanted = extra["training"]
    if not isinstance(wanted, dict):
        raise PolicyError('extra params "training" must be an object, e.g. {"training": {"retrain_every": 50}}')
    unknown = sorted(set(wanted) - set(POLICY_FIELDS))
    if unknown:
        raise PolicyError(f"extra params \"training\" has unknown field(s) {unknown}; known: {sorted(POLICY_FIELDS)}")
    fields: dict[str, Any] = {}
    for name, value in wanted.items():
        kind = POLICY_FIELDS[name]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is bool and not isinstance(value, bool) or kind in (int, float) and (not numeric or value < 0) \
                or kind is int and numeric and value != int(value):
            raise PolicyError(f"extra params training.{name} must be a {'non-negative ' if kind is not bool else ''}"
                              f"{kind.__name__}, got {value!r}")
        fields[name] = kind(value)
    if "promotion" in fields and fields["promotion"] not in {"always", "if_not_worse"}:
        raise PolicyError(f"extra params training.promotion must be \"always\" or \"if_not_worse\", "
                          f"got {fields['promotion']!r}")
    return fields


def parse_project_key(value: Any) -> int:
    """The Label Studio project id in "<id>.<created_at>" (an int id alone is accepted too)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = PROJECT_KEY.match(str(value)) if isinstance(value, (str, int)) else None
    if not match or int(match.group(1)) == 0:
        raise ProjectKeyError(f'"project" must look like "<id>.<timestamp>" (e.g. "3.1717171717"), got {value!r}')
    return int(match.group(1))


def parse_extra_params(value: Any) -> dict[str, Any] | None:
    """Extra params arrive as an object (API) or as the UI textarea's text: accept both."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {"text": value}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return {"value": value}


def _strategy_from(extra: dict[str, Any] | None) -> str | None:
    if not extra or "strategy" not in extra:
        return None
    name = extra["strategy"]
    if not isinstance(name, str) or name not in strategies.names():
        raise StrategyError(
            f"extra params ask for strategy {name!r}, which does not exist; known: {', '.join(strategies.names())}"
        )
    return name


def setup_project(
    *, project_key: Any, label_config: str, extra_params: Any = None, hostname: str = ""
) -> Project:
    """Validate the label config and remember the project; write only what changed.

    Label Studio calls /setup before every batch of predictions, so this must stay cheap.
    """
    ls_project_id = parse_project_key(project_key)
    config = parse_label_config(label_config)
    backend = backend_for(config)  # raises LabelConfigError naming the tags when unsupported
    extra = parse_extra_params(extra_params)
    strategy = _strategy_from(extra)
    policy = _policy_from(extra)
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
    project = Project.objects.select_related("serving").filter(ls_project_id=ls_project_id).first()
    if project is None:
        try:
            with transaction.atomic():
                project = Project.objects.create(ls_project_id=ls_project_id, last_setup_at=timezone.now(), **wanted)
                TrainingPolicy.objects.create(project=project, **(policy or {}))
                return project
        except IntegrityError:  # a concurrent /setup created it first
            project = Project.objects.select_related("serving").get(ls_project_id=ls_project_id)
    changed = [field for field, value in wanted.items() if getattr(project, field) != value]
    for field in changed:
        setattr(project, field, wanted[field])
    if changed:
        project.save(update_fields=[*changed, "updated_at"])
    if policy and "extra_params" in changed:
        # Only when the extra params change: edits made in the admin since then stay.
        TrainingPolicy.objects.update_or_create(project=project, defaults=policy)
    return project


def project_for_predict(*, project_key: Any, label_config: str | None) -> Project:
    """The project a /predict call is for; registers it if /setup never ran (interactive calls).

    A /predict that carries another label config than the stored one updates it: Label
    Studio is the authority on its project's config.
    """
    ls_project_id = parse_project_key(project_key)
    project = Project.objects.select_related("serving").filter(ls_project_id=ls_project_id).first()
    if project is not None and (not label_config or config_digest(label_config) == project.label_config_digest):
        return project
    if not label_config:
        raise ProjectKeyError(
            f"project {ls_project_id} is unknown here and the request has no label_config: call /setup first"
        )
    return setup_project(project_key=project_key, label_config=label_config,
                         extra_params=project.extra_params if project else None,
                         hostname=project.ls_hostname if project else "")
