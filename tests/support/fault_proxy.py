"""A loopback HTTP proxy in front of Label Studio that fails chosen requests, for fault tests.

`rule(method, path, n)` is called for every request (n counts requests that matched
`match`) and returns what to do:
- "pass": forward it;
- "fail": answer 503 without forwarding (Label Studio down);
- "lost": forward it, then answer 504 (the request was applied, the caller thinks not);
- "slow": forward it, then hold the answer `slow_seconds` (the caller times out; applied).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

from tests.support.processes import free_port

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


class FaultProxy:
    def __init__(self, upstream: str, *, match: Callable[[str, str], bool],
                 rule: Callable[[str, str, int], str], slow_seconds: float = 10.0):
        self.upstream = upstream.rstrip("/")
        self.match, self.rule, self.slow_seconds = match, rule, slow_seconds
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.matched = 0
        self.log: list[tuple[str, str, int, str, int]] = []  # method, path, n, action, upstream status
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                method, path = self.command, self.path
                action, n = "pass", 0
                if proxy.match(method, path):
                    with proxy._lock:
                        proxy.matched += 1
                        n = proxy.matched
                    action = proxy.rule(method, path, n)
                status = 0
                if action == "fail":
                    self._answer(503, b'{"detail": "injected: Label Studio unavailable"}', "application/json")
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                    upstream = requests.request(method, proxy.upstream + path, headers=headers, data=body,
                                                timeout=120, allow_redirects=False)
                    status = upstream.status_code
                    if action == "lost":
                        self._answer(504, b'{"detail": "injected: gateway timeout"}', "application/json")
                    else:
                        if action == "slow":
                            time.sleep(proxy.slow_seconds)
                        self._answer(upstream.status_code, upstream.content,
                                     upstream.headers.get("Content-Type", "application/json"))
                with proxy._lock:
                    proxy.log.append((method, path, n, action, status))

            def _answer(self, status: int, content: bytes, content_type: str):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(content)))
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):  # the caller gave up (timeout)
                    pass

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
