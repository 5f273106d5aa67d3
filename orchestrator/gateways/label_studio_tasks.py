"""Label Studio's tasks as the annotation store and the task mirror read them: whole, changed since a time, by id, counted.

Part of the Label Studio gateway (its requests go through `label_studio._request`).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from orchestrator.gateways.label_studio import LABELED, _first_page, _id_filter, _request

# What the store keeps of a task and of each of its annotations (Label Studio's `include` names the
# fields of both): never its predictions, which every push adds to.
STORE_FIELDS = ("id,data,annotations,updated_at,created_at,result,was_cancelled,ground_truth,completed_by,"
                "lead_time,task")


def _updated_since(value: str) -> dict[str, Any]:
    return {"filter": "filter:tasks:updated_at", "operator": "greater_or_equal", "type": "Datetime", "value": value}


def iter_annotated_tasks(ls_project_id: int, *, page_size: int = 500,
                         updated_since: str | None = None) -> Iterator[dict[str, Any]]:
    """Every task of a project that has annotations (updated at or after `updated_since`, Label Studio's
    own clock, when given), with them, page by page (never all in memory).

    A Data Manager filter (`total_annotations > 0`) with keyset paging by id: Label Studio
    1.23 ignores the SDK's `only_annotated`, so `tasks.list` would read every task of the
    project (all 10k of a project with 30 annotations) and page numbers would cost an
    OFFSET scan each. Skipped-only tasks carry nothing to learn and are left out.
    """
    after = 0
    extra = [_updated_since(updated_since)] if updated_since else []
    while True:
        body = _first_page(ls_project_id, [LABELED, *extra, _id_filter("greater", after)], "tasks:id",
                           limit=page_size, include=STORE_FIELDS, fields="all")  # annotations come only with fields=all
        tasks = list(body.get("tasks") or [])
        if not tasks:
            return
        yield from tasks
        after = max(int(t["id"]) for t in tasks)


def annotated_stamps(ls_project_id: int, *, updated_since: str | None = None,
                     page_size: int = 5000) -> dict[int, str]:
    """Each annotated task's `updated_at` (updated at or after `updated_since`, when given): ids and
    stamps only, the cheap listing a check compares with what it stored before reading anything whole."""
    stamps: dict[int, str] = {}
    after = 0
    extra = [_updated_since(updated_since)] if updated_since else []
    while True:
        body = _first_page(ls_project_id, [LABELED, *extra, _id_filter("greater", after)], "tasks:id",
                           limit=page_size, include="id,updated_at")
        page = body.get("tasks") or []
        if not page:
            return stamps
        stamps.update((int(t["id"]), str(t.get("updated_at") or "")) for t in page)
        after = max(int(t["id"]) for t in page)


def tasks_by_id(ls_project_id: int, task_ids: Sequence[int], *, batch: int = 500) -> list[dict[str, Any]]:
    """These tasks as they are now, annotated or not (a task Label Studio no longer has is left out)."""
    out: list[dict[str, Any]] = []
    wanted = sorted({int(i) for i in task_ids})
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        body = _first_page(ls_project_id, [], "tasks:id", limit=len(chunk), include=STORE_FIELDS, fields="all",
                           selected=chunk)
        out.extend(body.get("tasks") or [])
    return out


def annotated_task_ids(ls_project_id: int, *, page_size: int = 5000) -> set[int]:
    """The ids of every task that has annotations (ids only: the cheap full listing)."""
    ids: set[int] = set()
    after = 0
    while True:
        body = _first_page(ls_project_id, [LABELED, _id_filter("greater", after)], "tasks:id", limit=page_size,
                           include="id")
        page = [int(t["id"]) for t in body.get("tasks") or []]
        if not page:
            return ids
        ids.update(page)
        after = max(page)


def newest_update(ls_project_id: int) -> str | None:
    """The newest `updated_at` of any task of the project: Label Studio's own clock, as far as the store needs it."""
    body = _first_page(ls_project_id, [], "-tasks:updated_at", limit=1, include="id,updated_at")
    tasks = body.get("tasks") or []
    return str(tasks[0].get("updated_at") or "") or None if tasks else None


def annotation_counts(ls_project_id: int) -> tuple[int, int]:
    """How many annotations the project has in Label Studio now, and how many of those are skips: one call."""
    body = _request("GET", f"api/projects/{int(ls_project_id)}/").json()
    live, skipped = int(body.get("total_annotations_number") or 0), int(body.get("skipped_annotations_number") or 0)
    return live + skipped, skipped


def annotation_count(ls_project_id: int) -> int:
    """How many annotations (skips included) the project has in Label Studio now: one cheap call."""
    return annotation_counts(ls_project_id)[0]


# --- every task, as the task mirror reads them (learning/task_mirror.py) -------------------------------
MIRROR_FIELDS = "id,data"


def iter_tasks(ls_project_id: int, *, after_id: int = 0, page_size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    """Every task of the project whose id is above `after_id` (id and data), a page at a time, by id."""
    after = int(after_id)
    while True:
        body = _first_page(ls_project_id, [_id_filter("greater", after)], "tasks:id", limit=page_size,
                           include=MIRROR_FIELDS)
        tasks = list(body.get("tasks") or [])
        if not tasks:
            return
        yield tasks
        after = max(int(t["id"]) for t in tasks)


def task_ids(ls_project_id: int, *, page_size: int = 10000) -> set[int]:
    """The ids of every task of the project (ids only: the cheap full listing)."""
    ids: set[int] = set()
    after = 0
    while True:
        body = _first_page(ls_project_id, [_id_filter("greater", after)], "tasks:id", limit=page_size, include="id")
        page = [int(t["id"]) for t in body.get("tasks") or []]
        if not page:
            return ids
        ids.update(page)
        after = max(page)


def existing_task_ids(ls_project_id: int, task_ids_: Sequence[int], *, batch: int = 500) -> set[int]:
    """Those of these task ids that Label Studio still has (ids only)."""
    found: set[int] = set()
    wanted = sorted({int(i) for i in task_ids_})
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        body = _first_page(ls_project_id, [], "tasks:id", limit=len(chunk), include="id", selected=chunk)
        found.update(int(t["id"]) for t in body.get("tasks") or [])
    return found


def tasks_with_data(ls_project_id: int, task_ids_: Sequence[int], *, batch: int = 500) -> list[dict[str, Any]]:
    """These tasks' id and data (a task Label Studio no longer has is left out)."""
    out: list[dict[str, Any]] = []
    wanted = sorted({int(i) for i in task_ids_})
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        body = _first_page(ls_project_id, [], "tasks:id", limit=len(chunk), include=MIRROR_FIELDS, selected=chunk)
        out.extend(body.get("tasks") or [])
    return out


def task_count(ls_project_id: int) -> int:
    """How many tasks the project has in Label Studio now: one cheap call."""
    return int(_request("GET", f"api/projects/{int(ls_project_id)}/").json().get("task_number") or 0)
