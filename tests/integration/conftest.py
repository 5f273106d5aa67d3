"""Servers for integration tests: a real Label Studio 1.23.2 and the service under test.

Each is started on a free loopback port and stopped (whole process group) afterwards.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support.label_studio import LabelStudioServer
from tests.support.processes import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    server = LabelStudioServer(tmp_path_factory.mktemp("label-studio"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Service:
    """The orchestrator running as Label Studio sees it: gunicorn on a loopback port."""

    url: str
    env: dict[str, str]
    process: ManagedProcess
    calls: list = field(default_factory=list)

    def manage(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=self.env, cwd=ROOT,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def shell(self, code: str) -> str:
        return self.manage("shell", "--no-imports", "-c", code).strip()


def start_service(data_dir: Path, label_studio: LabelStudioServer | None, extra_env: dict | None = None) -> Service:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "BASIC_AUTH_"))}
    env.update({
        "ALO_DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "ALO_SERVING_REFRESH_SECONDS": "0.5",
        "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
    })
    if label_studio is not None:
        env.update({"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token})
    env.update(extra_env or {})
    port = free_port()
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], env=env, cwd=ROOT,
                   check=True, timeout=300)
    process = ManagedProcess(
        [sys.executable, str(ROOT / "manage.py"), "serve", "--no-worker", "--port", str(port)],
        log_path=data_dir / "service.log", env=env, cwd=ROOT,
    )
    process.start()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{url}/health", timeout=1).ok
        except requests.RequestException:
            return False

    wait_until(healthy, timeout=60, interval=0.2, what=f"the service at {url} to answer /health")
    return Service(url=url, env=env, process=process)


@pytest.fixture
def service(tmp_path, label_studio):
    svc = start_service(tmp_path / "service", label_studio)
    try:
        yield svc
    finally:
        svc.process.stop()
        print_log_tail(svc.process.log_path)


def print_log_tail(path: Path, lines: int = 80) -> None:
    """Shown by pytest only when the test failed: the service's side of the story."""
    if path.exists():
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        print(f"--- last {len(tail)} lines of {path} ---", *tail, sep="\n")


def wait_for(predicate, timeout: float = 30, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.3)
