"""WSGI entry point for gunicorn (`orchestrator.wsgi:application`).

Nothing heavy is imported here: MLflow and models load lazily, so /health answers at once.
"""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")

# What of a request body an answer leaves unread is read and dropped, up to this many bytes.
DRAIN_LIMIT = 64 * 1024 * 1024


class KeepAliveInStep:
    """Every endpoint (protocol, API, admin) leaves a keep-alive connection in step: whatever of the
    request's body the view did not read (an early 401, 404, 405, a refusal before parsing) is read
    and dropped before the answer goes out, so the server never takes its leftovers for the next
    request on the connection (they hung until a client's timeout)."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        result = self.app(environ, start_response)
        stream, left = environ.get("wsgi.input"), DRAIN_LIMIT
        try:
            while stream is not None and left > 0:
                chunk = stream.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except Exception:  # a client gone mid-body: nothing left to answer on
            pass
        return result


application = KeepAliveInStep(get_wsgi_application())
