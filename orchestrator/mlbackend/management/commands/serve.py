"""`manage.py serve`: the web server and a Celery worker per queue together, for one-command runs.

Production runs them as separate services (docker-compose.yml); this is `make run`.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Serve the ML backend (gunicorn) with a Celery worker per queue and beat on the configured broker."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--host", default=settings.HOST)
        parser.add_argument("--no-worker", action="store_true", help="Web server only.")

    def handle(self, *args, port: int, host: str, no_worker: bool, **options):
        settings.DATA_DIR.mkdir(parents=True, exist_ok=True)
        if settings.ALO_ADMIN_USER or settings.ALO_ADMIN_PASSWORD:
            call_command("bootstrap_admin", stdout=self.stdout)
        python = sys.executable
        commands = [
            [python, "-m", "gunicorn", "orchestrator.wsgi:application", "--config", "python:orchestrator.gunicorn_conf",
             "--bind", f"{host}:{port}"],
        ]
        if not no_worker:
            # One worker per queue (settings.ALO_QUEUES): a push or a clean-up never waits behind a training.
            for queue in settings.ALO_QUEUES:
                command = [python, "-m", "celery", "-A", "orchestrator", "worker", "--loglevel",
                           settings.LOG_LEVEL.lower(), "--concurrency", str(settings.WORKER_CONCURRENCY),
                           "--queues", "training,celery" if queue == "training" else queue,
                           "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle"]
                if queue == "training":
                    command += ["--beat", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")]
                commands.append(command)
        children = [subprocess.Popen(cmd) for cmd in commands]
        self.stdout.write(f"serving the ML backend at http://{host}:{port} (data: {settings.DATA_DIR})\n"
                          f"console: http://{host}:{port}/admin/ (an account: make admin, or ALO_ADMIN_USER and "
                          f"ALO_ADMIN_PASSWORD); management API: http://{host}:{port}/api/docs/")

        def stop(*_):
            for child in children:
                if child.poll() is None:
                    child.terminate()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            # If one child dies, stop the others: a web server without its workers is half a service.
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
        finally:
            stop()
            deadline = time.monotonic() + 10
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
        failed = [c.returncode for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGINT)]
        if failed:
            raise SystemExit(failed[0])
