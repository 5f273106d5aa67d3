"""gunicorn settings for the ML backend; each is overridable by environment variable.

Threads let one worker overlap a slow /predict with fast /health and /setup calls.
"""
import os

# One BLAS thread per worker: the workers already use every core, and oversubscribed
# OpenBLAS threads make small matrix products 10x slower under load.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
worker_class = os.environ.get("WEB_WORKER_CLASS", "gthread")
keepalive = 75
timeout = int(os.environ.get("WEB_TIMEOUT", "300"))
# Label Studio sends every selected task in one /predict: allow large bodies and lines.
limit_request_line = 8190
accesslog = "-" if os.environ.get("ACCESS_LOG", "").lower() in {"1", "true", "yes"} else None
loglevel = os.environ.get("LOG_LEVEL", "info").lower()


def post_worker_init(worker):
    """Open each request thread's database connection; in the background, connect to the
    broker, so the first webhook is quick, then import MLflow and load the serving models,
    so the first /predict is."""
    import threading

    _connect_request_threads(worker)

    def warm():
        from orchestrator.celery import warm_producer
        from orchestrator.gateways import mlflow_registry
        from orchestrator.learning.serving import registry

        warm_producer()
        mlflow_registry.preload()
        registry.warm_all()

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
