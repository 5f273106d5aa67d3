"""Label Studio's `project` field, as /setup, /predict and webhooks send it: "<id>.<created_at>"."""
from __future__ import annotations

import re
from typing import Any

PROJECT_KEY = re.compile(r"^\s*(\d+)(?:\.(\d+))?\s*$")


class ProjectKeyError(ValueError):
    """Label Studio's `project` field is not "<id>.<timestamp>"."""


def parse_project_key(value: Any) -> int:
    """The Label Studio project id in "<id>.<created_at>" (an int id alone is accepted too)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = PROJECT_KEY.match(str(value)) if isinstance(value, (str, int)) else None
    if not match or int(match.group(1)) == 0:
        raise ProjectKeyError(f'"project" must look like "<id>.<timestamp>" (e.g. "3.1717171717"), got {value!r}')
    return int(match.group(1))
