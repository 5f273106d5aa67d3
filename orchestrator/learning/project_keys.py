"""Label Studio's `project` field, as /setup, /predict and webhooks send it: "<id>.<created_at>"."""
from __future__ import annotations

import re
from typing import Any

PROJECT_KEY = re.compile(r"^\s*(\d{1,19})(?:\.(\d{1,30}))?\s*$")
# The largest id the service stores (a PositiveIntegerField: 32 bits on PostgreSQL), as Label Studio's own.
MAX_PROJECT_ID = 2**31 - 1


class ProjectKeyError(ValueError):
    """Label Studio's `project` field is not "<id>.<timestamp>"."""


def parse_project_key(value: Any) -> int:
    """The Label Studio project id in "<id>.<created_at>" (an int id alone is accepted too)."""
    if isinstance(value, int) and not isinstance(value, bool):
        project_id = value if 0 < value <= MAX_PROJECT_ID else None
    else:
        match = PROJECT_KEY.match(value) if isinstance(value, str) and len(value) <= 100 else None
        project_id = int(match.group(1)) if match else None
    if project_id is None or not 0 < project_id <= MAX_PROJECT_ID:
        raise ProjectKeyError('"project" must look like "<id>.<timestamp>" (e.g. "3.1717171717") with an id of at '
                              f"most {MAX_PROJECT_ID}, got {shown(value)}")
    return project_id


def shown(value: Any, limit: int = 100) -> str:
    """`value` as an error message may quote it: short, and never Python's int-to-string limit."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 300:
        return f"an integer of {len(str(abs(value))) if value.bit_length() < 13_000 else 'thousands of'} digits"
    if isinstance(value, str) and len(value) > limit:
        return f"a string of {len(value)} characters"
    if isinstance(value, (list, dict)):
        return f"a JSON {'list' if isinstance(value, list) else 'object'}"
    return repr(value)
