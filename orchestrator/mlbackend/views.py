"""Views of the ML backend protocol; each parses, calls one service, and answers JSON.

Plain Django views with orjson rather than DRF: Label Studio waits on these (1 s for
/health, 3 s for /setup), and /predict carries thousands of tasks.
"""
from __future__ import annotations

import functools
import re
import logging
from collections.abc import Callable
from typing import Any

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from backends import LabelConfigError, TaskDataError
from orchestrator.gateways import label_studio
from orchestrator.gateways.label_studio import NOT_CONFIGURED, ForeignUrlError, LabelStudioError
from orchestrator.learning import events, extra_params, predictions, projects, selectors, webhook_auth, webhooks
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.scoring import cleanup
from orchestrator.mlbackend.auth import basic_auth_enabled, check_basic_auth

logger = logging.getLogger(__name__)


def json_response(data: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(orjson.dumps(data), status=status, content_type="application/json")


# The longest reason phrase a refusal's status line carries (Label Studio shows the whole line).
REASON_CHARS = 400


def error(status: int, detail: str) -> HttpResponse:
    """A 4xx whose JSON names the problem, and whose status line does too: Label Studio shows its user only
    the status line of a refused call ("422 Client Error: <reason> for url: …/setup"), never the body."""
    response = json_response({"status": status, "detail": detail}, status=status)
    response.reason_phrase = reason_phrase(detail)
    return response


def reason_phrase(detail: str, limit: int = REASON_CHARS) -> str:
    """`detail` as an HTTP reason phrase: one line of Latin-1 text (what a status line can carry), cut at `limit`.
    Tag names lose their angle brackets: Label Studio's page renders the line as HTML (`<Text>` would vanish)."""
    line = " ".join(str(detail).split())
    line = re.sub(r"<(/?[A-Za-z][\w.-]*)( [^<>]*)?/?>", r"\1", line).replace("<", "(").replace(">", ")")
    line = line.translate({0x2014: "-", 0x2013: "-", 0x2026: "...", 0x2018: "'", 0x2019: "'", 0x201C: '"',
                           0x201D: '"'})
    line = "".join(c if 32 <= ord(c) < 127 or 160 <= ord(c) < 256 else "?" for c in line)
    return line if len(line) <= limit else line[:limit - 3] + "..."


class BadRequest(Exception):
    def __init__(self, detail: str, status: int = 400):
        super().__init__(detail)
        self.detail, self.status = detail, status


# Input errors answered 4xx with their message (422 for a label config the service cannot learn).
REFUSALS = (LabelConfigError, TaskDataError, ForeignUrlError, projects.ProjectKeyError, extra_params.StrategyError,
            extra_params.PolicyError, extra_params.FeaturesError, events.EventError)


def protocol_view(methods: tuple[str, ...], *, auth: bool = True) -> Callable:
    """Method check, optional basic auth, and input errors as 4xx JSON naming the problem."""

    def decorate(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest) -> HttpResponse:
            if request.method not in methods:
                response = error(405, f"{request.method} is not allowed on {request.path}; use {', '.join(methods)}")
                response["Allow"] = ", ".join(methods)
                return response
            if auth and not check_basic_auth(request.headers.get("Authorization")):
                response = error(401, "basic authentication required: wrong or missing user and password")
                response["WWW-Authenticate"] = 'Basic realm="Label Studio ML backend"'
                return response
            try:
                return view(request)
            except BadRequest as exc:
                return error(exc.status, exc.detail)
            except REFUSALS as exc:
                return error(422 if isinstance(exc, LabelConfigError) else 400, str(exc))
            except LabelStudioError as exc:
                logger.warning("label_studio_error path=%s error=%s", request.path, exc)
                return error(502, f"{exc.for_caller()} (the service's log has the details)")

        return wrapper

    return decorate


def json_body(request: HttpRequest, *, max_bytes: int | None = None) -> dict[str, Any]:
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if max_bytes is not None and (not declared.isdigit() or int(declared) > max_bytes):
        raise BadRequest(f"the request body is {declared} bytes; {request.path} takes at most {max_bytes}", 413)
    if not request.body:
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest(f"the request body must be a JSON object, got {type(body).__name__}")
    return body


@protocol_view(("GET", "HEAD"))
def health(request: HttpRequest) -> HttpResponse:
    # No database, no model, no network: Label Studio gives this 1 s.
    return json_response({"status": "UP", "model_class": settings.MODEL_CLASS_NAME})


@protocol_view(("POST",))
def setup(request: HttpRequest) -> HttpResponse:
    body = json_body(request)
    if "project" not in body:
        raise BadRequest('missing "project" (Label Studio sends "<id>.<timestamp>")')
    schema = body.get("schema") or body.get("label_config")
    if schema is not None and not isinstance(schema, str):
        raise BadRequest(f'"schema" must be the label config XML as a string, got {type(schema).__name__}')
    if not schema or not schema.strip():
        raise BadRequest('missing "schema": the project\'s label config XML')
    # hostname and access_token are recorded/ignored: calls go only to LABEL_STUDIO_URL.
    try:
        project = projects.setup_project(
            project_key=body["project"], label_config=schema,
            extra_params=body.get("extra_params"), hostname=str(body.get("hostname") or ""),
        )
    except REFUSALS as exc:
        # Label Studio shows its user only "400 Client Error": the reason goes to the log and the console.
        known = projects.record_setup_refusal(project_key=body["project"], reason=str(exc),
                                              hostname=str(body.get("hostname") or ""))
        key = body["project"]
        logger.warning("setup_refused project=%s known=%s reason=%s",
                       key if isinstance(key, str) and len(key) <= 64 else projects.shown(key), known is not None,
                       exc)
        raise
    request.alo_project, request.alo_version = project.ls_project_id, model_cache.announced_version(project)
    if not label_studio.is_configured():  # connected, but the loop cannot close: say so where operators look
        logger.warning("setup_without_label_studio project=%s %s", project.ls_project_id, NOT_CONFIGURED)
    return json_response({"model_version": request.alo_version})


@protocol_view(("POST",))
def predict(request: HttpRequest) -> HttpResponse:
    body = json_body(request)
    tasks = body.get("tasks")
    if tasks is None:
        raise BadRequest('missing "tasks": a list of Label Studio task objects')
    if not isinstance(tasks, list):
        raise BadRequest(f'"tasks" must be a list, got {type(tasks).__name__}')
    if not tasks:
        raise BadRequest('"tasks" is empty: nothing to predict')
    if len(tasks) > settings.PREDICT_MAX_TASKS:
        raise BadRequest(f'{len(tasks)} tasks in one request; the limit is {settings.PREDICT_MAX_TASKS}', 413)
    for position, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise BadRequest(f"tasks[{position}] must be an object, got {type(task).__name__}")
    project_key = body.get("project")
    if project_key is None:
        project_key = tasks[0].get("project")
    if project_key is None:
        raise BadRequest('missing "project" (Label Studio sends "<id>.<timestamp>")')
    label_config = body.get("label_config")
    if label_config is not None and not isinstance(label_config, str):
        raise BadRequest(f'"label_config" must be the label config XML as a string, got {type(label_config).__name__}')
    predictor = predictions.predictor_for_request(project_key=project_key, label_config=label_config, tasks=tasks)
    request.alo_project, request.alo_version = predictor.ls_project_id, predictor.version
    results = predictions.predict(predictor=predictor, tasks=tasks)
    if len(tasks) > 1 and label_studio.is_configured():  # Retrieve predictions: it may have raced a push (cleanup.after_retrieve)
        try:
            cleanup.after_retrieve(predictor.project_pk)
        except Exception:  # the answer stands; the next push's clean-up removes what this one would
            logger.warning("retrieve_cleanup_not_requested project=%s", predictor.ls_project_id, exc_info=True)
    return json_response({"results": results})


@protocol_view(("POST",), auth=False)
def webhook(request: HttpRequest) -> HttpResponse:
    # Label Studio sends webhooks without the basic-auth header (see README): with a webhook
    # secret, only the service's own webhook (its header), or basic auth (Label Studio's Start
    # Training), gets through. Either way /webhook records ids only; training reads the
    # annotations back from Label Studio itself.
    basic_auth_passed = basic_auth_enabled() and check_basic_auth(request.headers.get("Authorization"))
    if not webhook_auth.accepts(request.headers.get(webhook_auth.WEBHOOK_SECRET_HEADER),
                                basic_auth_passed=basic_auth_passed):
        return error(401, f"webhook refused: no valid {webhook_auth.WEBHOOK_SECRET_HEADER} header (the service "
                          "signs its own webhook in each Label Studio project) and no basic auth")
    event = webhooks.receive_webhook(json_body(request, max_bytes=settings.ALO_WEBHOOK_MAX_BYTES))
    return json_response({"status": "ok", "event": event.pk, "action": event.action}, status=201)


@protocol_view(("POST",))
def train(request: HttpRequest) -> HttpResponse:
    event = webhooks.receive_legacy_train(json_body(request))
    return json_response({"status": "ok", "event": event.pk}, status=201)


@protocol_view(("GET",))
def versions(request: HttpRequest) -> HttpResponse:
    project = request.GET.get("project")
    return json_response(selectors.versions(project_key=project))
