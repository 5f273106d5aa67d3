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
from orchestrator.learning.models import Project, ScoringPolicy, TrainingPolicy

PROJECT_KEY = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*$")


class ProjectKeyError(ValueError):
    """Label Studio's `project` field is not "<id>.<timestamp>"."""


class StrategyError(ValueError):
    """Extra params name a query strategy that does not exist."""


class PolicyError(ValueError):
    """Extra params set a training policy field wrongly."""


# Policy fields that Label Studio's "Extra params" may set: {"training": {...}, "scoring": {...}}.
POLICY_FIELDS = {
    "auto_train": bool, "min_annotations": int, "retrain_every": int, "quiet_seconds": float,
    "promotion": str, "max_macro_f1_drop": float,
}
SCORING_FIELDS = {"auto_push": bool, "view_title": str, "uncertainty_sampling": bool, "chunk_size": int}
CHOICES = {"promotion": {"always", "if_not_worse"}}
EXAMPLES = {"training": '{"training": {"retrain_every": 50}}', "scoring": '{"scoring": {"chunk_size": 500}}'}


def _policy_from(extra: dict[str, Any] | None, section: str = "training",
                 known: dict[str, type] = POLICY_FIELDS) -> dict[str, Any] | None:
    if not extra or section not in extra:
        return None
    wanted = extra[section]
    if not isinstance(wanted, dict):
        raise PolicyError(f'extra params "{section}" must be an object, e.g. {EXAMPLES[section]}')
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise PolicyError(f"extra params \"{section}\" has unknown field(s) {unknown}; known: {sorted(known)}")
    fields: dict[str, Any] = {}
    for name, value in wanted.items():
        kind = known[name]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind is bool and not isinstance(value, bool) or kind in (int, float) and (not numeric or value < 0) \
                or kind is int and numeric and value != int(value) or kind is str and not isinstance(value, str):
            raise PolicyError(f"extra params {section}.{name} must be a {'non-negative ' if kind in (int, float) else ''}"
                              f"{kind.__name__}, got {value!r}")
        fields[name] = kind(value)
        if name in CHOICES and fields[name] not in CHOICES[name]:
            raise PolicyError(f"extra params {section}.{name} must be one of {sorted(CHOICES[name])}, "
                              f"got {fields[name]!r}")
    if section == "scoring" and not 1 <= fields.get("chunk_size", 1) <= 5000:
        raise PolicyError(f"extra params scoring.chunk_size must be between 1 and 5000, got {fields['chunk_size']}")
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
    scoring_policy = _policy_from(extra, "scoring", SCORING_FIELDS)
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
                ScoringPolicy.objects.create(project=project, **(scoring_policy or {}))
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
    if scoring_policy and "extra_params" in changed:
        ScoringPolicy.objects.update_or_create(project=project, defaults=scoring_policy)
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
