"""The only gateway to Label Studio: label-studio-sdk calls, file reads, retries and paging.

It calls only the Label Studio the operator configured (LABEL_STUDIO_URL with
LABEL_STUDIO_API_KEY), never a host named by a request.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

# Cloud storage URIs that Label Studio resolves for us through its presign endpoint.
STORAGE_SCHEMES = ("s3://", "gs://", "azure-blob://")
TEXT_CACHE_SIZE = 10_000


class LabelStudioError(RuntimeError):
    """Label Studio could not be reached (status_code None), or answered with an error."""

    def __init__(self, message: str, status_code: int | None = None, *, public: bool = False):
        super().__init__(message)
        self.status_code = status_code
        self.public = public  # the message may go to a caller: it quotes nothing Label Studio answered

    def for_caller(self) -> str:
        """What a protocol caller may read: never Label Studio's own answer."""
        if self.public:
            return str(self)
        return f"Label Studio {'answered ' + str(self.status_code) if self.status_code else 'could not be reached'}"


class LabelStudioNotConfigured(LabelStudioError):
    """LABEL_STUDIO_URL or LABEL_STUDIO_API_KEY is not set."""


# What a service without a Label Studio to call cannot do: said at start, at each Connect, on the console.
NOT_CONFIGURED = ("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are not set: Label Studio can connect and ask for "
                  "predictions, but the service cannot read annotations (no training), push scores (no queue "
                  "order, no cold start) or delete old predictions. Set both and restart.")


class ForeignUrlError(ValueError):
    """A task points at a URL that is not on the configured Label Studio."""


def is_configured() -> bool:
    return bool(settings.LABEL_STUDIO_URL and settings.LABEL_STUDIO_API_KEY)


@lru_cache(maxsize=1)
def client():
    """The label-studio-sdk client for the configured Label Studio (handles legacy and personal tokens)."""
    if not is_configured():
        raise LabelStudioNotConfigured(NOT_CONFIGURED)
    from label_studio_sdk import LabelStudio

    return LabelStudio(
        base_url=settings.LABEL_STUDIO_URL, api_key=settings.LABEL_STUDIO_API_KEY,
        timeout=settings.LABEL_STUDIO_TIMEOUT,
    )


def _request(method: str, path: str, *, retries: int | None = None, **kwargs: Any):
    """A raw HTTP call through the SDK's client (auth, token refresh).

    The SDK retries every method on 5xx/408/409/429 and transport errors, POST included;
    `retries=0` turns that off for calls that must not be repeated blindly (an import
    that timed out may have been applied).
    """
    wrapper = client()._client_wrapper
    if retries is not None:
        kwargs["request_options"] = {**kwargs.get("request_options", {}), "max_retries": retries}
    try:
        response = wrapper.httpx_client.request(path, method=method, **kwargs)
    except Exception as exc:  # httpx transport errors, timeouts
        raise LabelStudioError(f"{method} {path} failed: {exc}") from exc
    if response.status_code >= 400:
        raise LabelStudioError(f"{method} {path} answered {response.status_code}: {response.text[:300]}",
                               status_code=response.status_code)
    return response


# --- task data behind URLs ------------------------------------------------------------------
class _TextCache:
    def __init__(self, size: int):
        self._size = size
        self._items: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: str) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_texts = _TextCache(TEXT_CACHE_SIZE)


def _local_path(url: str) -> str | None:
    """The path of `url` on the configured Label Studio, or None if it points elsewhere."""
    if url.startswith("/"):
        return url
    base = urlsplit(settings.LABEL_STUDIO_URL)
    parts = urlsplit(url)
    if parts.scheme in {"http", "https"} and (parts.scheme, parts.netloc) == (base.scheme, base.netloc):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return None


# The only Label Studio paths a task's URL may name: its uploads, its local files, and (built
# here from s3://, gs://, azure-blob:// URLs) its cloud-storage resolution. Anything else, say
# /api/users/, would be read with the service's key and is refused.
TASK_DATA_PATHS = re.compile(
    r"^/(?:data/upload/[^?#]+|data/local-files/\?d=[^#]+|storage-data/uploaded/\?filepath=[^#]+"
    r"|tasks/\d{1,18}/resolve/\?fileuri=[^#&]+)$")


def fetch_text(url: str, task_id: Any) -> str:
    """The text a task's data URL points at: an upload, a local file, or cloud storage via Label Studio."""
    cached = _texts.get(url)
    if cached is not None:
        return cached
    if url.startswith(STORAGE_SCHEMES):
        if isinstance(task_id, bool) or not isinstance(task_id, int) or not 0 < task_id < 10**18:
            raise ForeignUrlError(f"task {task_id!r}: a cloud-storage URL ({url.split('://')[0]}://...) is read "
                                  "through Label Studio by the task's id, and this task has no integer id")
        encoded = base64.urlsafe_b64encode(url.encode()).decode()
        path = f"/tasks/{task_id}/resolve/?fileuri={quote(encoded)}"
    else:
        path = _local_path(url)
        if path is None:
            raise ForeignUrlError(
                f"{url[:200]!r} is not on the configured Label Studio ({settings.LABEL_STUDIO_URL or 'none set'}); "
                "only Label Studio uploads, its local files and its cloud storages are read"
            )
    if ".." in unquote(path) or not TASK_DATA_PATHS.match(path):
        raise ForeignUrlError(f"{url[:200]!r} is not a task file on Label Studio; only its uploads "
                              "(/data/upload/...), local files (/data/local-files/?d=...) and cloud storages are read")
    try:
        text = _request("GET", path.lstrip("/")).text
    except LabelStudioError as exc:  # its body is Label Studio's business: the status says enough
        logger.warning("task_text_unreadable task=%s url=%s error=%s", task_id, url[:200], exc)
        what = f"answered {exc.status_code}" if exc.status_code else "could not be reached"
        raise LabelStudioError(f"Label Studio {what} for the text of task {task_id!r}",
                               status_code=exc.status_code, public=True) from None
    _texts.put(url, text)
    return text


def with_retries(call: Callable[[], Any], *, what: str | Callable[[], str], attempts: int | None = None,
                 backoff: float | None = None,
                 retry_if: Callable[[BaseException], bool] | None = None,
                 before_retry: Callable[[BaseException], None] | None = None) -> Any:
    """Run `call()` again after transport errors and 5xx/429 answers, waiting 1x, 2x, 4x... `backoff`.

    The one retry loop for Label Studio; the final error is a LabelStudioError that says
    `what` failed (a callable `what` is asked then, e.g. for what is still to send).

    For whole reads (a paginated dataset, restarted from the first page), every error of the
    read ends as such an error. With `retry_if` (which errors are worth another attempt), an
    error that is not Label Studio's goes up as it is: the caller's own bug is not reported
    as Label Studio's failure. `before_retry(error)` runs after the wait, before the next
    attempt (a push asks there what its lost import stored, and sends only the rest); what
    it raises ends the loop.
    """
    attempts = attempts or settings.LABEL_STUDIO_RETRIES
    backoff = settings.LABEL_STUDIO_RETRY_BACKOFF if backoff is None else backoff
    retryable = retry_if or _retryable
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Exception as exc:
            if not retryable(exc) or attempt == attempts:
                if retry_if is not None and not isinstance(exc, LabelStudioError):
                    raise
                label = what() if callable(what) else what
                raise LabelStudioError(f"{label} failed after {attempt} attempt(s): {exc}",
                                       status_code=getattr(exc, "status_code", None)) from exc
            delay = backoff * 2 ** (attempt - 1)
            logger.warning("label_studio_retry what=%s attempt=%s delay=%.1fs error=%s",
                           what() if callable(what) else what, attempt, delay, exc)
            time.sleep(delay)
            error = exc
        if before_retry is not None:
            before_retry(error)
    raise AssertionError("unreachable")


def _retryable(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, LabelStudioNotConfigured):
        return False
    if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
        return True
    status = getattr(exc, "status_code", None)  # LabelStudioError and the SDK's ApiError
    if status is None:
        return isinstance(exc, LabelStudioError)  # a transport failure wrapped by _request
    return status >= 500 or status == 429


# --- scoring: unlabeled tasks, predictions, the project's version and views -----------------------
UNLABELED = {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0}
LABELED = {"filter": "filter:tasks:total_annotations", "operator": "greater", "type": "Number", "value": 0}


def _id_filter(operator: str, value: int) -> dict[str, Any]:
    return {"filter": "filter:tasks:id", "operator": operator, "type": "Number", "value": int(value)}


def _first_page(ls_project_id: int, items: list[dict[str, Any]], ordering: str, *, limit: int,
                include: str | None = None, fields: str | None = None,
                selected: Sequence[int] | None = None) -> dict[str, Any]:
    """Page 1 of the project's tasks matching all Data Manager filter `items`, in `ordering`
    (only the `selected` task ids, when given)."""
    query: dict[str, Any] = {"filters": {"conjunction": "and", "items": items}, "ordering": [ordering]}
    if selected is not None:
        query["selectedItems"] = {"all": False, "included": [int(i) for i in selected]}
    params = {"project": int(ls_project_id), "page": 1, "page_size": int(limit),
              "query": json.dumps(query, separators=(",", ":"))}
    if include:
        params["include"] = include
    if fields:
        params["fields"] = fields
    return _request("GET", "api/tasks/", params=params).json()


def prediction_versions(ls_project_id: int, task_ids: Sequence[int], *, batch: int = 500) -> dict[int, list[str]]:
    """For each of these tasks still unlabeled: the model_version of each of its predictions.

    The tasks are named in the Data Manager's `selectedItems`, `batch` at a time, so the
    query string stays a few kilobytes (proxies often refuse request lines over 8 KB).
    """
    out: dict[int, list[str]] = {}
    wanted = sorted({int(i) for i in task_ids})
    for start in range(0, len(wanted), batch):
        chunk = wanted[start:start + batch]
        # Predictions come only with fields=all; include trims the rest away.
        body = _first_page(ls_project_id, [UNLABELED], "tasks:id", limit=len(chunk), include="id,predictions",
                           fields="all", selected=chunk)
        for task in body.get("tasks") or []:
            out[int(task["id"])] = [str(p.get("model_version") or "") for p in task.get("predictions") or []
                                    if isinstance(p, dict)]
    return out


def import_predictions(ls_project_id: int, predictions: list[dict[str, Any]]) -> int:
    """Bulk import (one request, never retried by the SDK); returns how many Label Studio created."""
    # Encoded here: the SDK's own encoder walks every value in Python (90 ms per 5,000 predictions, 9x json's).
    content = json.dumps(predictions, separators=(",", ":")).encode()
    body = _request("POST", f"api/projects/{int(ls_project_id)}/import/predictions", content=content,
                    headers={"Content-Type": "application/json"}, retries=0,
                    request_options={"timeout_in_seconds": settings.LABEL_STUDIO_IMPORT_TIMEOUT}).json()
    return int(body.get("created") or 0)


def model_versions(ls_project_id: int) -> dict[str, int]:
    """Predictions per model_version in the project."""
    body = _request("GET", f"api/projects/{int(ls_project_id)}/model-versions/").json()
    return {str(k): int(v) for k, v in body.items()} if isinstance(body, dict) else {}


def predictions_of(ls_project_id: int, versions: set[str], *, after_id: int,
                   limit: int = 500, duplicates_of: str | None = None) -> tuple[list[int], int | None]:
    """The ids of predictions of these `versions` on the next `limit` tasks (by id, above `after_id`,
    labeled or not, with predictions); and the last task id read, None past the end.

    With `duplicates_of`, also each task's predictions of that version but its newest (the highest id:
    racing a push, Label Studio stores Retrieve predictions' answer as soon as it has it, and the push
    imports the task later, with the score of its order). Without `versions`, only tasks with two
    predictions or more are read.
    """
    least = 0 if versions else 1
    has_predictions = {"filter": "filter:tasks:total_predictions", "operator": "greater", "type": "Number",
                       "value": least}
    body = _first_page(ls_project_id, [has_predictions, _id_filter("greater", after_id)], "tasks:id", limit=limit,
                       include="id,predictions", fields="all")
    tasks = body.get("tasks") or []
    ids: list[int] = []
    for task in tasks:
        listed = [p for p in task.get("predictions") or [] if isinstance(p, dict) and p.get("id") is not None]
        ids += [int(p["id"]) for p in listed if str(p.get("model_version") or "") in versions]
        if duplicates_of is not None:
            ids += sorted(int(p["id"]) for p in listed if str(p.get("model_version") or "") == duplicates_of)[:-1]
    return ids, (int(tasks[-1]["id"]) if len(tasks) >= limit else None)


def delete_prediction(prediction_id: int) -> bool:
    """Delete one prediction (a short transaction in Label Studio); False if it was gone already.

    Label Studio's own deletion of a model_version (`DELETE /api/projects/{id}/model-versions/`)
    deletes ~125 predictions a second in one transaction: on SQLite every other write (an
    annotator's submit) waits for it and fails after 5 s, on PostgreSQL those on the same
    tasks wait. So the service never uses it.
    """
    try:
        _request("DELETE", f"api/predictions/{int(prediction_id)}/")
    except LabelStudioError as exc:
        if exc.status_code == 404:
            return False
        raise
    return True


def get_project(ls_project_id: int) -> dict[str, Any]:
    return _request("GET", f"api/projects/{int(ls_project_id)}/").json()


def update_project(ls_project_id: int, **fields: Any) -> dict[str, Any]:
    return _request("PATCH", f"api/projects/{int(ls_project_id)}/", json=fields).json()


# --- Data Manager views -----------------------------------------------------------------------
# Columns of the Data Manager an annotator working the queue does not need: hidden, the task's id, its
# score and its data (the text) are what the tab shows (Label Studio lists data columns last: with all
# seventeen shown the text started ~3,100 px to the right). A lead can show any again in the tab.
QUEUE_HIDDEN_COLUMNS = [f"tasks:{name}" for name in (
    "inner_id", "completed_at", "total_annotations", "cancelled_annotations", "total_predictions", "annotators",
    "annotations_results", "annotations_ids", "predictions_model_versions", "predictions_results", "file_upload",
    "storage_filename", "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists")]


def queue_view_data(title: str) -> dict[str, Any]:
    """A tab of unlabeled tasks, ascending score: the most informative first; only id, score and data shown."""
    return {
        "title": title,
        "ordering": ["tasks:predictions_score"],
        "filters": {"conjunction": "and", "items": [dict(UNLABELED)]},
        "hiddenColumns": {"explore": list(QUEUE_HIDDEN_COLUMNS), "labeling": list(QUEUE_HIDDEN_COLUMNS)},
    }


def ensure_queue_view(ls_project_id: int, title: str) -> dict[str, Any]:
    """The project's tab `title` as `queue_view_data` describes it: created, or repaired if its order or
    filter was edited. Its columns are set when it is made (or when it has no column setting: made by an
    older release); which columns a lead shows or hides after that stays theirs."""
    wanted = queue_view_data(title)
    for view in list_views(ls_project_id):
        data = view.get("data") or {}
        if data.get("title") != title:
            continue
        if data.get("ordering") == wanted["ordering"] and _same_filters(data.get("filters"), wanted["filters"]) \
                and "hiddenColumns" in data:
            return view
        columns = {"hiddenColumns": data["hiddenColumns"]} if "hiddenColumns" in data else {}
        return save_view(ls_project_id, {**data, **wanted, **columns}, view_id=view["id"])
    return save_view(ls_project_id, wanted)


def _same_filters(have: Any, want: dict[str, Any]) -> bool:
    if not isinstance(have, dict) or have.get("conjunction") != want["conjunction"]:
        return False
    keys = ("filter", "operator", "type", "value")
    return [tuple(i.get(k) for k in keys) for i in have.get("items") or []] == \
        [tuple(i.get(k) for k in keys) for i in want["items"]]


def list_views(ls_project_id: int) -> list[dict[str, Any]]:
    body = _request("GET", "api/dm/views/", params={"project": int(ls_project_id)}).json()
    return body if isinstance(body, list) else []


def save_view(ls_project_id: int, data: dict[str, Any], view_id: int | None = None) -> dict[str, Any]:
    payload = {"project": int(ls_project_id), "data": data}
    if view_id is None:
        return _request("POST", "api/dm/views/", json=payload).json()
    return _request("PATCH", f"api/dm/views/{int(view_id)}/", json=payload).json()
