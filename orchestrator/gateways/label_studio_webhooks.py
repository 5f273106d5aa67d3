"""The service's own webhook in a Label Studio project: list, create, update (webhook_auth.py keeps it signed)."""
from __future__ import annotations

from typing import Any

from orchestrator.gateways.label_studio import _request


def list_webhooks(ls_project_id: int) -> list[dict[str, Any]]:
    """The project's webhooks (url, headers, actions, is_active, ...)."""
    body = _request("GET", "api/webhooks/", params={"project": int(ls_project_id)}).json()
    return body if isinstance(body, list) else list(body.get("results") or [])


def create_webhook(ls_project_id: int, data: dict[str, Any]) -> dict[str, Any]:
    return _request("POST", "api/webhooks/", json={**data, "project": int(ls_project_id)}, retries=0).json()


def update_webhook(webhook_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """PATCH one webhook. Label Studio replaces its actions with `data`'s (none if absent): send them."""
    return _request("PATCH", f"api/webhooks/{int(webhook_id)}/", json=data).json()
