"""`manage.py serve`: the web server and a Celery worker per queue together, for one-command runs.

Production runs them as separate services (docker-compose.yml); this is `make run`.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


# Seconds from a stop (Ctrl+C, SIGTERM) until every process is gone.
STOP_SECONDS = 8.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """(In the child, before it runs) Linux: SIGTERM this process when its parent dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the stop below still reaches every child
        pass


def _signal_groups(children: list[subprocess.Popen], signum: int) -> None:
    """Send `signum` to each child's process group (the child and what it started: server workers, pools)."""
    for child in children:
        try:
            os.killpg(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


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
        # Each child in a session of its own: Ctrl+C reaches this process only, which stops each child once
        # (a terminal's SIGINT to every process, on top of a master's own signal to its workers, deadlocked
        # gunicorn's workers); each dies with this process too (PDEATHSIG), even a SIGKILLed one.
        children = [subprocess.Popen(cmd, start_new_session=True, preexec_fn=_die_with_parent) for cmd in commands]
        self.stdout.write(f"serving the ML backend at http://{host}:{port} (data: {settings.DATA_DIR})\n"
                          f"console: http://{host}:{port}/admin/ (an account: make admin, or ALO_ADMIN_USER and "
                          f"ALO_ADMIN_PASSWORD); management API: http://{host}:{port}/api/docs/")
        stopping: list[float] = []  # when the stop began
        asked: list[int] = []  # the signals that asked for it

        def stop() -> None:
            if stopping:  # asked again (a second Ctrl+C): at once
                _signal_groups(children, signal.SIGKILL)
                return
            stopping.append(time.monotonic())
            for child in children:  # each stops what it started (gunicorn its workers, Celery its pool)
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        def on_signal(signum, _frame) -> None:
            asked.append(signum)
            stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            # If one child dies, stop the others: a web server without its workers is half a service.
            while all(child.poll() is None for child in children) and not stopping:
                time.sleep(0.2)
        finally:
            if not stopping:
                stop()
            # Everything is down STOP_SECONDS after the stop: what still runs then (a training a worker was
            # finishing; it is delivered again) is killed with its whole group.
            deadline = stopping[0] + STOP_SECONDS
            for child in children:
                try:
                    child.wait(timeout=max(0.05, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            _signal_groups(children, signal.SIGKILL)
            for child in children:
                child.wait()
        if asked:
            return
        failed = [c.returncode for c in children if c.returncode not in (0, -signal.SIGTERM, -signal.SIGKILL)]
        raise SystemExit(failed[0] if failed else 1)  # a child ended on its own: the service is not whole
