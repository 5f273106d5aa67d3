"""`manage.py serve` (what `make run` starts): web server plus a Celery worker, no servers needed."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.integration.conftest import ROOT
from tests.support.processes import ManagedProcess, free_port, group_exists, wait_until

pytestmark = pytest.mark.integration


def test_serve_runs_web_and_worker_on_embedded_defaults(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "MLFLOW_TRACKING_URI",
                        "ALO_TEST_DATABASE"}}
    env["ALO_DATA_DIR"] = str(tmp_path / "data")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=300)
    port = free_port()
    serve = ManagedProcess([*manage, "serve", "--port", str(port)], log_path=tmp_path / "serve.log", env=env, cwd=ROOT)
    serve.start()
    try:
        def health():
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except requests.RequestException:
                return None

        assert wait_until(health, timeout=60, what="/health")["status"] == "UP"
        # The worker answers on the filesystem broker: background jobs need no Redis.
        def worker_replies():
            result = subprocess.run([sys.executable, "-m", "celery", "-A", "orchestrator", "inspect", "ping",
                                     "--timeout", "3"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
            return result.returncode == 0 and "pong" in result.stdout

        wait_until(worker_replies, timeout=90, interval=1, what="the Celery worker to answer ping")
        assert (tmp_path / "data" / "orchestrator.sqlite3").exists()
        assert (tmp_path / "data" / "broker").is_dir()
    finally:
        pgid = serve.pgid
        serve.stop()
    assert not group_exists(pgid), "serve left processes behind"
