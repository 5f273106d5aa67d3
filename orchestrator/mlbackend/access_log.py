"""One log line per ML backend protocol request: method, path, status, milliseconds, and the
project and model version it was for when the view knew them. Never a header or a body."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger("orchestrator.access")

PROTOCOL_PATHS = frozenset({"/", "/health", "/setup", "/predict", "/webhook", "/train", "/versions"})


class ProtocolAccessLog:
    """Middleware: times each protocol request; views may set `request.alo_project` / `alo_version`."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.ALO_ACCESS_LOG or request.path not in PROTOCOL_PATHS:
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = (time.perf_counter() - started) * 1000
        logger.info("%s %s status=%s ms=%.1f project=%s version=%s", request.method, request.path,
                    response.status_code, elapsed, getattr(request, "alo_project", "-"),
                    getattr(request, "alo_version", "-"))
        return response
