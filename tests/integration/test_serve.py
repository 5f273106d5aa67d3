"""`manage.py serve` (what `make run` starts): web server plus a Celery worker, no servers needed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.integration.conftest import ROOT
from tests.support.processes import ManagedProcess, free_port, group_exists, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.database_independent]


def serve_environment(tmp_path, **extra_env: str) -> dict:
    """The environment of `manage.py serve` on the embedded defaults in tmp_path, migrated."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "MLFLOW_TRACKING_URI",
                        "ALO_TEST_DATABASE"}}
    env.update({"ALO_DATA_DIR": str(tmp_path / "data"), **extra_env})
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], env=env, cwd=ROOT,
                   check=True, timeout=300)
    return env


def start_serve(tmp_path, *args: str, **extra_env: str) -> tuple[ManagedProcess, int, dict]:
    """`manage.py serve` on the embedded defaults in tmp_path (migrated first): process, port, environment."""
    env = serve_environment(tmp_path, **extra_env)
    manage = [sys.executable, str(ROOT / "manage.py")]
    port = free_port()
    serve = ManagedProcess([*manage, "serve", *args, "--port", str(port)], log_path=tmp_path / "serve.log", env=env,
                           cwd=ROOT)
    return serve.start(), port, env


def test_serve_runs_web_and_worker_on_embedded_defaults(tmp_path):
    serve, port, env = start_serve(tmp_path, ALO_RECONCILE_SECONDS="1")  # beat sends its passes every second
    try:
        def health():
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except requests.RequestException:
                return None

        assert wait_until(health, timeout=60, what="/health")["status"] == "UP"
        # A worker per queue answers on the filesystem broker: background jobs need no Redis, and a push
        # or a clean-up never waits behind a training.
        def workers_reply():
            result = subprocess.run([sys.executable, "-m", "celery", "-A", "orchestrator", "inspect", "ping",
                                     "--timeout", "3"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
            replied = {line.split("@")[0].lstrip("-> ").strip() for line in result.stdout.splitlines()
                       if line.startswith("->") and line.rstrip().endswith("OK")}
            return replied >= {"training", "scoring", "housekeeping"}

        wait_until(workers_reply, timeout=90, interval=1, what="a Celery worker per queue to answer ping")
        queues = subprocess.run([sys.executable, "-m", "celery", "-A", "orchestrator", "inspect", "active_queues",
                                 "--timeout", "5"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        consumed = queues.stdout.count  # each queue consumed by exactly one worker
        assert consumed("* {'name': 'scoring'") == 1 and consumed("* {'name': 'housekeeping'") == 1, queues.stdout
        assert consumed("* {'name': 'training'") == 1, queues.stdout
        assert (tmp_path / "data" / "orchestrator.sqlite3").exists()
        assert (tmp_path / "data" / "broker").is_dir()
        # Quiet at INFO while nothing happens: beat's passes and the embedded broker's start say nothing.
        log = (tmp_path / "serve.log").read_text()
        assert "reconcile_training" in log or "ready." in log  # the log is the workers' and beat's
        assert "Sending due task" not in log and "No hostname was supplied" not in log, log[-3000:]
    finally:
        pgid = serve.pgid
        serve.stop()
    assert not group_exists(pgid), "serve left processes behind"


def test_a_refused_request_leaves_the_keep_alive_connection_answering(tmp_path):
    """401 and 405 are answered after the body is read, so gunicorn does not take its leftovers
    for the next request on the connection (1-5% of those once hung until the 75 s keep-alive)."""
    import base64
    import http.client

    serve, port, _ = start_serve(tmp_path, "--no-worker", BASIC_AUTH_USER="ls", BASIC_AUTH_PASS="pw")
    auth = {"Authorization": "Basic " + base64.b64encode(b"ls:pw").decode()}
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/health", headers=auth, timeout=1).ok, timeout=60,
                   what="/health")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = b'{"tasks": [' + b'{"id": 1, "data": {"text": "hello"}},' * 8000 + b'{"id": 2}]}'
        for attempt in range(60):
            method, expected = ("POST", 401) if attempt % 2 == 0 else ("PUT", 405)
            connection.request(method, "/predict", body=body, headers={"Content-Type": "application/json"})
            refused = connection.getresponse()
            refused.read()
            assert refused.status == expected
            connection.request("GET", "/health", headers=auth)  # the same connection, kept alive
            answer = connection.getresponse()  # a hang here times out after 10 s
            assert answer.status == 200 and b"UP" in answer.read(), attempt
        connection.close()
    finally:
        serve.stop()


# Requests answered before their body is read: the protocol's, the management API's, the admin's, unknown paths.
EARLY_ANSWERS = [
    ("PUT", "/predict", 405), ("DELETE", "/setup", 405), ("PUT", "/health", 405), ("PATCH", "/webhook", 405),
    ("POST", "/api/projects/", 401), ("PUT", "/api/projects/7/strategy/", 401), ("POST", "/api/versions/1/promote/", 401),
    ("POST", "/api/no-such-thing/", 404), ("POST", "/admin/learning/project/", 403), ("POST", "/no-such-path", 404),
]


def test_every_endpoint_leaves_a_keep_alive_connection_in_step(tmp_path):
    """Each answer given before the request's body was read (refusals, unknown paths, redirects): the next
    request on the same connection is answered at once, for the protocol, the API and the admin alike."""
    import http.client

    serve, port, _ = start_serve(tmp_path, "--no-worker")
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok, timeout=60, what="/health")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = b'{"tasks": [' + b'{"id": 1, "data": {"text": "hello"}},' * 8000 + b'{"id": 2}]}'  # ~300 KB
        for attempt in range(3):
            for method, path, expected in EARLY_ANSWERS:
                connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
                early = connection.getresponse()
                early.read()
                assert early.status == expected, (method, path, early.status)
                connection.request("GET", "/health")  # the same connection, kept alive
                answer = connection.getresponse()  # out of step: this times out after 10 s
                assert answer.status == 200 and b"UP" in answer.read(), (attempt, method, path)
        connection.close()
    finally:
        serve.stop()


def _process_table() -> dict[int, tuple[int, str, str]]:
    """Every process: pid -> (parent pid, state letter, command line), read from /proc (Linux)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                fields = stat.read().rsplit(")", 1)[1].split()
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), fields[0], command)
    return table


def _descendants(pid: int) -> dict[int, str]:
    """The live processes `pid` started, and theirs (pid -> command line)."""
    table = _process_table()
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, state, command) in table.items():
            if ppid == parent and child not in found and state != "Z":
                found[child] = command
                todo.append(child)
    return found


def _alive(pids) -> list[int]:
    table = _process_table()
    return [pid for pid in pids if pid in table and table[pid][1] != "Z"]


def test_ctrl_c_and_sigterm_stop_every_process_within_10_seconds_twenty_times_in_a_row(tmp_path):
    """As a terminal's Ctrl+C does (SIGINT to the whole foreground group) and as a service manager does
    (SIGTERM): every process `make run` started is gone within 10 s, and the port is free for the next run."""
    import signal
    import socket
    import time

    env = serve_environment(tmp_path)  # migrated once; each run below is a `make run` of the same folder
    port = free_port()
    manage = [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)]
    web_workers = int(env.get("WEB_WORKERS", "2"))
    for run in range(20):
        with open(tmp_path / f"serve-{run}.log", "wb") as log:
            serve = subprocess.Popen(manage, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # its own group: the terminal's foreground group
        try:
            wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok, timeout=60,
                       what=f"/health (run {run})")

            def everyone_up():
                commands = list(_descendants(serve.pid).values())
                return (sum("celery" in c and " worker " in c for c in commands) >= 3 * 2  # a worker and its pool
                        and sum("gunicorn" in c for c in commands) >= 1 + web_workers)

            wait_until(everyone_up, timeout=60, interval=0.2, what=f"the web workers and Celery workers (run {run})")
            started = _descendants(serve.pid)
            signum = signal.SIGINT if run % 2 == 0 else signal.SIGTERM
            stop_at = time.monotonic()
            os.killpg(serve.pid, signum)
            serve.wait(timeout=15)
            wait_until(lambda: not _alive(started), timeout=15, interval=0.1,
                       what=f"every process to end after {signum.name} (run {run})")
            took = time.monotonic() - stop_at
            assert took <= 10, f"run {run}: {signum.name} took {took:.1f} s to stop everything"
            log = (tmp_path / f"serve-{run}.log").read_text()
            assert serve.returncode == 0, (run, serve.returncode, log[-2000:])
            # Each child stops what it started: no pool process killed under its parent (an ERROR line each).
            assert "exited with 'signal 15" not in log, (run, log[-2000:])
            with socket.socket() as probe:  # the next run can bind the port
                probe.bind(("127.0.0.1", port))
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
                serve.wait()
            for pid in _alive(_descendants(serve.pid)):
                os.kill(pid, signal.SIGKILL)
