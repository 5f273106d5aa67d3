"""Self-test of tests/support: each server really starts, really serves, and leaves nothing behind.

Run: python -m pytest tests/support_selftest -q -p no:cacheprovider --noconftest
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.label_studio import LabelStudioAPIError, LabelStudioServer, ensure_venv
from tests.support.postgres import PostgresServer, find_bindir
from tests.support.processes import ManagedProcess, ProcessError, free_port, port_is_open, wait_until
from tests.support.redis import RedisNotInstalled, RedisServer, find_redis_server

TEXT_CLASSIFICATION_CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="label" toName="text"><Choice value="ham"/><Choice value="spam"/></Choices></View>'
)


def assert_gone(process: ManagedProcess, port: int | None = None) -> None:
    """The port is closed and no process of the group is left, not even a zombie."""
    if port is not None:
        assert not port_is_open(port), f"port {port} still open after stop()"
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pgid, 0)


# -- processes -------------------------------------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 1024 < port < 65536
    assert not port_is_open(port)


def test_wait_until_returns_the_value_or_names_what_it_waited_for() -> None:
    calls = iter([0, None, "ready"])
    assert wait_until(lambda: next(calls), timeout=5, interval=0.01, what="x") == "ready"

    def refuses() -> bool:
        raise ConnectionRefusedError("not yet")

    with pytest.raises(TimeoutError, match="the frobnicator.*ConnectionRefusedError"):
        wait_until(refuses, timeout=0.2, interval=0.05, what="the frobnicator")


def test_stop_kills_grandchildren_and_is_idempotent(tmp_path: Path) -> None:
    # A shell whose background child would outlive a plain kill of the shell.
    # (The log starts with the command line, so wait for output that is not spelled out in it.)
    proc = ManagedProcess(["sh", "-c", "sleep 300 & echo sta''rted; wait"], tmp_path / "sh.log").start()
    wait_until(lambda: "started" in proc.log_text(), timeout=10, what="the shell to start")
    assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    proc.stop()
    assert_gone(proc)
    assert proc.returncode == -signal.SIGTERM
    proc.stop()  # again: no error


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    script = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('re' + 'ady', flush=True); "
        "time.sleep(300)"
    )
    with ManagedProcess([sys.executable, "-c", script], tmp_path / "stubborn.log", stop_timeout=0.5) as proc:
        wait_until(lambda: "ready" in proc.log_text(), timeout=10, what="the stubborn child")
        began = time.monotonic()
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - began < 5
    assert_gone(proc)


def test_a_process_that_dies_reports_its_log_tail(tmp_path: Path) -> None:
    proc = ManagedProcess(["sh", "-c", "echo boom-detail; exit 3"], tmp_path / "dies.log").start()
    with pytest.raises(ProcessError, match=r"(?s)exited with 3.*boom-detail"):
        proc.wait_ready(lambda: False, timeout=10, what="never")
    proc.stop()
    assert_gone(proc)


# -- Redis -----------------------------------------------------------------------------------------------


def test_redis_serves_and_stops(tmp_path: Path) -> None:
    try:
        find_redis_server()
    except RedisNotInstalled as exc:
        pytest.skip(str(exc))
    import redis

    server = RedisServer(tmp_path / "redis").start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.ping() is True
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        server.stop()
    assert server.process is not None
    assert_gone(server.process, server.port)
    assert not list((tmp_path / "redis").glob("*.rdb")), "persistence should be off"


# -- PostgreSQL ------------------------------------------------------------------------------------------


def test_postgres_serves_and_stops(tmp_path: Path) -> None:
    try:
        find_bindir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    psycopg = pytest.importorskip("psycopg")

    # tmp_path is under /tmp/pytest-of-root (mode 0700) when run as root: exercises the fallback location.
    server = PostgresServer(tmp_path / "pg").start()
    owned = list(server._owned_dirs)
    try:
        assert server.database_url == f"postgresql://alo:alo@127.0.0.1:{server.port}/alo"
        with psycopg.connect(server.database_url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("select current_user, current_database()").fetchone() == ("alo", "alo")
        with pytest.raises(psycopg.OperationalError):  # the password is really checked over TCP
            psycopg.connect(server.database_url.replace("alo:alo@", "alo:wrong@"), connect_timeout=5)
    finally:
        server.stop()
    assert server.process is not None
    assert_gone(server.process, server.port)
    assert not any(path.exists() for path in owned), "dirs outside data_dir must be removed"
    server.stop()  # idempotent


# -- Label Studio ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_label_studio_serves_the_api_and_stops(tmp_path: Path) -> None:
    ensure_venv()
    server = LabelStudioServer(tmp_path / "ls", extra_env={"WEBHOOK_TIMEOUT": "5"}).start()
    try:
        assert server.health() == {"status": "UP"}
        project = server.api("POST", "/api/projects",
                             json={"title": "harness", "label_config": TEXT_CLASSIFICATION_CONFIG})
        texts = ["win a prize now", "see you at lunch", "cheap loans!!!"]
        imported = server.api("POST", f"/api/projects/{project['id']}/import", json=[{"text": t} for t in texts])
        assert imported["task_count"] == 3
        tasks = server.api("GET", "/api/tasks", params={"project": project["id"]})["tasks"]
        assert sorted(t["data"]["text"] for t in tasks) == sorted(texts)

        with pytest.raises(LabelStudioAPIError) as err:
            server.api("GET", "/api/projects/999999")
        assert err.value.status == 404

        # Every file Label Studio writes stays in the data dir (its analytics id goes to XDG_CONFIG_HOME).
        assert (tmp_path / "ls" / "xdg-config" / "label-studio" / "user_id").exists()
        assert (tmp_path / "ls" / "label_studio.sqlite3").exists()
    finally:
        server.stop()
    assert server.process is not None
    assert_gone(server.process, server.port)


@pytest.mark.parametrize("ending", ["exit", "keyboard-interrupt"])
def test_atexit_stops_what_an_interrupted_run_left(tmp_path: Path, ending: str) -> None:
    # A test process that starts a server and never stops it (crash, Ctrl-C): atexit must clean up.
    # Python leaves SIGINT alone when it starts with SIGINT ignored (a run launched in the
    # background by a non-interactive shell): restore Ctrl-C's KeyboardInterrupt explicitly.
    script = f"""
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from tests.support.processes import ManagedProcess
proc = ManagedProcess(["sh", "-c", "sleep 300 & sleep 300"], {str(tmp_path / "left.log")!r}).start()
print(proc.pgid, flush=True)
if {ending!r} == "keyboard-interrupt":
    time.sleep(300)
"""
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    pgid = int(runner.stdout.readline())
    if ending == "keyboard-interrupt":
        runner.send_signal(signal.SIGINT)
    runner.wait(timeout=30)
    wait_until(lambda: not _group_alive(pgid), timeout=10, what=f"process group {pgid} to be gone")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
