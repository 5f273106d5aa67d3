"""Who may read the console and who may steer a project: one rule for the admin and the API.

Reading a page or a list needs a staff account with the model's view (or change) permission,
as Django's admin asks. Every act that changes what a project serves or queues (train, score,
promote, roll back, retire, cancel, retry, change the strategy or the schedule, connect a
Label Studio project) needs "Can change project" (`learning.change_project`). Superusers
have both. So a labeling lead can be given a read-only account: the pages and `GET /api/...`
but none of the acts.
"""
from __future__ import annotations

from typing import Any

# The permission an act needs, as Django's admin lists it ("learning | project | Can change project").
STEER = "learning.change_project"
STEER_NAME = "Can change project"


def can_view(user: Any, model: str) -> bool:
    """Whether `user` may read `model`'s rows (e.g. "modelversion"): staff, and view or change permission."""
    return staff(user) and (user.has_perm(f"learning.view_{model}") or user.has_perm(f"learning.change_{model}"))


def can_steer(user: Any) -> bool:
    return staff(user) and user.has_perm(STEER)


def view_refusal(model: str) -> str:
    return (f"this account may not read {model} records: it needs the permission learning.view_{model} "
            f"(an admin grants it under Users, or makes the account a superuser)")


def steer_refusal() -> str:
    return (f"this account may read but not act: training, scoring, promoting, rolling back, retiring, "
            f"cancelling, retrying, changing a strategy, a schedule or a policy and connecting a project "
            f"need the permission {STEER} "
            f"(\"{STEER_NAME}\"; an admin grants it under Users)")


def staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)
