"""gunicorn settings for the ML backend, from orchestrator/settings.py (WEB_* and friends there).

Threads let one worker overlap a slow /predict with fast /health and /setup calls.
"""
import os

# One BLAS thread per worker: the workers already use every core, and oversubscribed
# OpenBLAS threads make small matrix products 10x slower under load. (Set before anything
# imports numpy; a value the operator set is kept.)
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from orchestrator import settings as _settings  # noqa: E402 - after the BLAS defaults


def _control_socket(data_dir) -> str:
    import hashlib
    import tempfile

    path = str(data_dir / "gunicorn.ctl")
    if len(path.encode()) < 100:  # a Unix socket's path has at most 107 bytes
        return path
    return f"{tempfile.gettempdir()}/alo-gunicorn-{hashlib.sha256(path.encode()).hexdigest()[:16]}.ctl"


workers = _settings.WEB_WORKERS
threads = _settings.WEB_THREADS
worker_class = _settings.WEB_WORKER_CLASS
keepalive = 75
timeout = _settings.WEB_TIMEOUT
# Label Studio sends every selected task in one /predict: allow large bodies and lines.
limit_request_line = 8190
accesslog = "-" if _settings.ACCESS_LOG else None
# A stop (SIGTERM from `manage.py serve` or an orchestrator) waits this long for requests in flight.
graceful_timeout = 5
# gunicorn's control socket, one per instance (its default, ~/.gunicorn/gunicorn.ctl, is shared by
# every instance of the user): under the data folder, or the temp folder when that path is too long.
control_socket = _control_socket(_settings.DATA_DIR)
loglevel = _settings.LOG_LEVEL.lower()


def when_ready(server):
    """(The master, once) Say loudly when no Label Studio is configured: the loop cannot close."""
    from orchestrator.gateways import label_studio

    if not label_studio.is_configured():
        server.log.warning("%s", label_studio.NOT_CONFIGURED)


def post_worker_init(worker):
    """Open each request thread's database connection; in the background, connect to the
    broker, so the first webhook is quick, then import MLflow and load the serving models,
    so the first /predict is."""
    import threading

    _connect_request_threads(worker)

    def warm():
        from orchestrator.celery import warm_producer
        from orchestrator.gateways import mlflow_store
        from orchestrator.learning.model_cache import model_cache

        warm_producer()
        mlflow_store.preload()
        model_cache.warm_all()

    threading.Thread(target=warm, name="warm-models", daemon=True).start()


def _connect_request_threads(worker):
    """Django's database connections are per thread (kept CONN_MAX_AGE): without this, the
    first request on each of the worker's threads opens one (PostgreSQL under load: 300 ms
    measured, inside a webhook ack). One task per thread: each waits at a barrier until all
    threads run, so no thread takes two."""
    import logging
    import threading

    pool, threads = getattr(worker, "tpool", None), int(worker.cfg.threads or 1)
    if pool is None:  # not the gthread worker
        return
    barrier = threading.Barrier(threads)

    def connect():
        from django.db import connection

        try:
            barrier.wait(timeout=10)
            connection.ensure_connection()
        except Exception as exc:  # a database down at start fails the first request instead, with its error
            logging.getLogger(__name__).warning("database_not_reached_at_start error=%s", exc)

    for _ in range(threads):
        pool.submit(connect)
