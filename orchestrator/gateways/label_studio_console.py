"""The console's calls to Label Studio: a project's title and counts, the projects the key sees,
and registering this service as a project's model. Each answers a person waiting on a page: one
attempt, a short timeout."""
from __future__ import annotations

import json
from typing import Any

from orchestrator.gateways.label_studio import UNLABELED, _request

CONSOLE_TIMEOUT = 5.0  # a page waits at most this long on Label Studio


def project_summary(ls_project_id: int) -> dict[str, Any]:
    """Title, counts and predictions per model_version of a project as Label Studio has them now. The counts come
    from the Data Manager's task list (what its footer shows): the project's own counters stay 0
    for tasks imported with their annotations."""
    quick = {"retries": 0, "request_options": {"timeout_in_seconds": CONSOLE_TIMEOUT}}
    body = _request("GET", f"api/projects/{int(ls_project_id)}/", **quick).json()

    def page(items: list[dict[str, Any]]) -> dict[str, Any]:
        query = json.dumps({"filters": {"conjunction": "and", "items": items}, "ordering": ["tasks:id"]})
        return _request("GET", "api/tasks/", params={"project": int(ls_project_id), "page": 1, "page_size": 1,
                                                     "include": "id", "query": query}, **quick).json()

    every, queue = page([]), page([UNLABELED])
    tags = _request("GET", f"api/projects/{int(ls_project_id)}/model-versions/", **quick).json()
    tasks, unlabeled = int(every.get("total") or 0), int(queue.get("total") or 0)
    return {"title": body.get("title") or "", "tasks": tasks, "annotated": tasks - unlabeled, "queue": unlabeled,
            "predictions": int(every.get("total_predictions") or 0),
            "model_version": body.get("model_version") or "", "sampling": body.get("sampling") or "",
            "tags": {str(k): int(v) for k, v in tags.items()} if isinstance(tags, dict) else {}}


def list_projects() -> list[dict[str, Any]]:
    """Every project the token sees: id and title (for the console's connect form)."""
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        body = _request("GET", "api/projects/", params={"page": page, "page_size": 100}, retries=0,
                        request_options={"timeout_in_seconds": CONSOLE_TIMEOUT}).json()
        items = body.get("results", []) if isinstance(body, dict) else body
        out += [{"id": int(p["id"]), "title": p.get("title") or ""} for p in items]
        if not isinstance(body, dict) or not body.get("next"):
            return out
        page += 1


def model_backends(ls_project_id: int) -> list[dict[str, Any]]:
    body = _request("GET", "api/ml/", params={"project": int(ls_project_id)}, retries=0,
                    request_options={"timeout_in_seconds": CONSOLE_TIMEOUT}).json()
    return body if isinstance(body, list) else body.get("results", [])


def connect_model(ls_project_id: int, *, url: str, title: str, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """Add this service as the project's model (Label Studio calls /setup on it while doing so).
    An existing connection to the same URL is returned as it is."""
    for backend in model_backends(ls_project_id):
        if str(backend.get("url") or "").rstrip("/") == url.rstrip("/"):
            return backend
    body: dict[str, Any] = {"project": int(ls_project_id), "url": url, "title": title, "is_interactive": False}
    if auth:
        body.update({"auth_method": "BASIC_AUTH", "basic_auth_user": auth[0], "basic_auth_pass": auth[1]})
    return _request("POST", "api/ml/", json=body, retries=0, request_options={"timeout_in_seconds": 30}).json()
