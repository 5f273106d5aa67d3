"""Label Studio's connection form, "Extra params": the project's strategy and its policies.

`{"strategy": "margin", "training": {...}, "scoring": {...}}`, as an object or the form's
text. Pure parsing: what is wrong is said here, naming the field and what it accepts.
"""
from __future__ import annotations

from typing import Any

import orjson

import strategies
from backends.features import FEATURE_SETS
from orchestrator.learning.project_keys import shown


class StrategyError(ValueError):
    """Extra params name a query strategy that does not exist."""


class PolicyError(ValueError):
    """Extra params set a training policy field wrongly."""


class FeaturesError(ValueError):
    """Extra params name features a model cannot learn from."""


# Policy fields that Label Studio's "Extra params" may set: {"training": {...}, "scoring": {...}}.
POLICY_FIELDS = {
    "auto_train": bool, "min_annotations": int, "retrain_every": int, "quiet_seconds": float,
    "promotion": str, "max_macro_f1_drop": float, "stop_kappa": float,
}
SCORING_FIELDS = {"auto_push": bool, "view_title": str, "uncertainty_sampling": bool, "chunk_size": int}
CHOICES = {"promotion": {"always", "if_not_worse"}}
# The range of each policy number, wherever it is set (admin, API, Label Studio's Extra params):
# beyond these a value is a typo, and an unbounded one once failed every later check of its project.
POLICY_BOUNDS: dict[str, tuple[float, float]] = {
    "min_annotations": (0, 1_000_000), "retrain_every": (0, 1_000_000), "quiet_seconds": (0.0, 86_400.0),
    "max_macro_f1_drop": (0.0, 1.0), "stop_kappa": (0.5, 1.0), "chunk_size": (1, 5000),
}
STRING_LIMIT = 100  # the longest text field a policy has (the queue view's title)
EXAMPLES = {"training": '{"training": {"retrain_every": 50}}', "scoring": '{"scoring": {"chunk_size": 500}}'}


def policy_from(extra: dict[str, Any] | None, section: str = "training",
                known: dict[str, type] = POLICY_FIELDS) -> dict[str, Any] | None:
    """The policy fields `extra` sets in `section` ("training" or "scoring"), checked; None if it sets none."""
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
        if kind is bool and not isinstance(value, bool) or kind in (int, float) and not numeric \
                or kind is str and not isinstance(value, str):
            raise PolicyError(f"extra params {section}.{name} must be a {kind.__name__}, got {shown(value)}")
        if name in POLICY_BOUNDS:
            low, high = POLICY_BOUNDS[name]
            if not low <= value <= high:  # also infinity (JSON's 1e400)
                raise PolicyError(f"extra params {section}.{name} must be between {_number(low)} and "
                                  f"{_number(high)}, got {shown(value)}")
        if kind is int and value != int(value):
            raise PolicyError(f"extra params {section}.{name} must be an int, got {shown(value)}")
        if kind is str and len(value) > STRING_LIMIT:
            raise PolicyError(f"extra params {section}.{name} must be at most {STRING_LIMIT} characters, "
                              f"got {len(value)}")
        fields[name] = kind(value)
        if name in CHOICES and fields[name] not in CHOICES[name]:
            raise PolicyError(f"extra params {section}.{name} must be one of {sorted(CHOICES[name])}, "
                              f"got {shown(fields[name])}")
    return fields


def _number(value: float) -> str:
    return f"{int(value):,}" if value == int(value) and abs(value) >= 10_000 else f"{value:g}"


def parse_extra_params(value: Any) -> dict[str, Any] | None:
    """Extra params arrive as an object (API) or as the UI textarea's text: accept both."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:  # orjson, not json: json turns NaN, Infinity and 1e999 into floats no JSON column will store
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            if value.lstrip().startswith("{"):  # meant as settings: a typo must not silently drop them
                raise PolicyError(f"extra params are not valid JSON ({exc}); write them as JSON, "
                                  f"e.g. {EXAMPLES['training']}") from exc
            return {"text": value}
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return {"value": value}


def strategy_from(extra: dict[str, Any] | None) -> str | None:
    """The query strategy `extra` names, if any; StrategyError lists the known ones."""
    if not extra or "strategy" not in extra:
        return None
    name = extra["strategy"]
    if not isinstance(name, str) or name not in strategies.names():
        raise StrategyError(
            f"extra params ask for strategy {name!r}, which does not exist; known: {', '.join(strategies.names())}"
        )
    return name


def features_from(extra: dict[str, Any] | None) -> str | None:
    """The features `extra` names (`{"features": "tfidf+glove"}`), if any; FeaturesError lists the known ones."""
    if not extra or "features" not in extra:
        return None
    name = extra["features"]
    if not isinstance(name, str) or name not in FEATURE_SETS:
        raise FeaturesError(f"extra params ask for features {name!r}, which do not exist; known: "
                            + ", ".join(f"{key} ({what})" for key, what in FEATURE_SETS.items()))
    return name
