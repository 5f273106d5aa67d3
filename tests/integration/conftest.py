"""Servers for integration tests: a real Label Studio 1.23.2 and the service under test.

Each is started on a free loopback port and stopped (whole process group) afterwards.
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support.label_studio import MEMORY_EFFICIENT_IMPORT, LabelStudioServer
from tests.support.processes import ManagedProcess, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def _running(server):
    """Start a server for a fixture and stop it afterwards, whatever happened."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    yield from _running(LabelStudioServer(tmp_path_factory.mktemp("label-studio")))


@pytest.fixture(scope="session")
def label_studio_memory_efficient(tmp_path_factory):
    """A second Label Studio, with its memory-efficient prediction import switched on (README,
    "Large projects"). That import skips the label-config check the default one makes, which
    shows the flag took: a prediction naming an unknown choice is stored, not dropped."""
    for server in _running(LabelStudioServer(tmp_path_factory.mktemp("label-studio-me"),
                                             extra_env={MEMORY_EFFICIENT_IMPORT: "true"})):
        probe = server.api("POST", "/api/projects", json={"title": "flag probe", "label_config": (
            '<View><Text name="text" value="$text"/><Choices name="label" toName="text">'
            '<Choice value="a"/></Choices></View>')})
        server.api("POST", f"/api/projects/{probe['id']}/import", json=[{"text": "probe"}])
        (task,) = server.api("GET", "/api/tasks", params={"project": probe["id"], "include": "id"})["tasks"]
        created = server.api("POST", f"/api/projects/{probe['id']}/import/predictions", json=[{
            "task": task["id"], "model_version": "probe", "result": [
                {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["unknown"]}}]}])
        assert created == {"created": 1}, f"{MEMORY_EFFICIENT_IMPORT} did not take: {created}"
        server.api("DELETE", f"/api/projects/{probe['id']}/")
        yield server


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


_databases = itertools.count(1)


def fresh_database(url: str) -> str:
    """A new, empty PostgreSQL database on the suite's server for one service, as SQLite gets a new
    file per service: two Label Studios number their projects alike, and a row left by an earlier
    test under the same project id would be taken for this test's project."""
    import psycopg

    name = f"alo_service_{os.getpid()}_{next(_databases)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


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
    port = free_port()
    env["ALO_SERVICE_URL"] = f"http://127.0.0.1:{port}"  # where Label Studio reaches it
    env.update(extra_env or {})
    if env.get("DATABASE_URL", "").startswith("postgres"):
        env["DATABASE_URL"] = fresh_database(env["DATABASE_URL"])
    subprocess.run([sys.executable, str(ROOT / "manage.py"), "migrate", "--noinput", "-v0"], env=env, cwd=ROOT,
                   check=True, timeout=300)
    process = ManagedProcess(
        [sys.executable, str(ROOT / "manage.py"), "serve", "--no-worker", "--port", str(port)],
        log_path=data_dir / "service.log", env=env, cwd=ROOT,
    )
    process.start()
    url = f"http://127.0.0.1:{port}"

    auth = (env["BASIC_AUTH_USER"], env["BASIC_AUTH_PASS"]) if env.get("BASIC_AUTH_USER") else None

    def healthy() -> bool:
        try:
            return requests.get(f"{url}/health", timeout=1, auth=auth).ok
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


# --- the training loop: Redis, a Celery worker, the service's database -------------------------
_redis_db = iter(range(1, 16))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    from tests.support.redis import RedisServer

    yield from _running(RedisServer(tmp_path_factory.mktemp("redis")))


@dataclass
class Loop:
    """The service with its Celery worker on Redis, as deployed."""

    service: Service
    data_dir: Path
    worker: ManagedProcess | None = None
    workers_started: int = 0

    extra_workers: dict[str, ManagedProcess] = field(default_factory=dict)

    def start_worker(self, queues: str = "training,scoring,housekeeping,celery", *, beat: bool = True,
                     ) -> ManagedProcess:
        """A worker on `queues` (all of them by default); with `beat`, it is the loop's main worker."""
        self.workers_started += 1
        command = [sys.executable, "-m", "celery", "-A", "orchestrator", "worker", "--loglevel", "INFO",
                   "--concurrency", "1", "--without-gossip", "--without-mingle", "--queues", queues,
                   "--hostname", f"w{self.workers_started}@%h"]
        if beat:
            command += ["--beat", "--schedule", str(self.data_dir / "celerybeat-schedule")]
        process = ManagedProcess(command, log_path=self.data_dir / f"worker-{self.workers_started}.log",
                                 env=self.service.env, cwd=ROOT, name="celery-worker").start()
        if beat:
            self.worker = process
        else:
            self.extra_workers[queues] = process
        return process

    def rows(self, sql: str) -> list[tuple]:
        """Read the service's database directly (fast enough to poll; SQLite or PostgreSQL)."""
        url = self.service.env.get("DATABASE_URL")
        if url:
            import psycopg

            with psycopg.connect(url) as conn:
                return conn.execute(sql).fetchall()
        import sqlite3

        conn = sqlite3.connect(self.data_dir / "orchestrator.sqlite3", timeout=20)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def runs(self, ls_project_id: int) -> list[dict]:
        columns = ("id", "trigger", "status", "num_events", "num_annotations", "promoted", "detail", "version")
        found = self.rows(
            "SELECT r.id, r.trigger, r.status, r.num_events, r.num_annotations, r.promoted, r.detail, v.version "
            "FROM learning_trainingrun r JOIN learning_project p ON p.id = r.project_id "
            "LEFT JOIN learning_modelversion v ON v.id = r.model_version_id "
            f"WHERE p.ls_project_id = {int(ls_project_id)} ORDER BY r.id")
        return [dict(zip(columns, row)) for row in found]

    def versions(self, ls_project_id: int) -> list[dict]:
        columns = ("version", "status", "num_annotations", "model_uri", "error")
        found = self.rows(
            "SELECT v.version, v.status, v.num_annotations, v.model_uri, v.error FROM learning_modelversion v "
            f"JOIN learning_project p ON p.id = v.project_id WHERE p.ls_project_id = {int(ls_project_id)} "
            "ORDER BY v.id")
        return [dict(zip(columns, row)) for row in found]

    def idle(self, ls_project_id: int) -> bool:
        """No training running or scheduled and no training event pending."""
        (state,) = self.rows(
            "SELECT p.training_lease_owner, p.training_check_at, "
            "(SELECT COUNT(*) FROM learning_webhookevent e WHERE e.project_id = p.id AND e.processed_at IS NULL "
            " AND e.action IN ('ANNOTATION_CREATED','ANNOTATION_UPDATED','ANNOTATIONS_DELETED','START_TRAINING')) "
            f"FROM learning_project p WHERE p.ls_project_id = {int(ls_project_id)}")
        return state[0] == "" and state[1] is None and state[2] == 0

    def setup_version(self, project_key: str, schema: str) -> str:
        answer = requests.post(f"{self.service.url}/setup", json={"project": project_key, "schema": schema}, timeout=10)
        answer.raise_for_status()
        return answer.json()["model_version"]


def start_loop(tmp_path: Path, redis_server, label_studio, extra_env: dict | None = None, *,
               per_queue: bool = False) -> Loop:
    import redis as redis_client

    db = next(_redis_db)
    redis_client.Redis.from_url(f"redis://127.0.0.1:{redis_server.port}/{db}").flushdb()
    broker = f"redis://127.0.0.1:{redis_server.port}/{db}"
    env = {"CELERY_BROKER_URL": broker, "CELERY_RESULT_BACKEND": broker, **(extra_env or {})}
    service = start_service(tmp_path / "service", label_studio, env)
    loop = Loop(service=service, data_dir=tmp_path / "service")
    if per_queue:  # as manage.py serve and docker-compose.yml run them: a worker per queue
        loop.start_worker("training,celery")
        loop.start_worker("scoring", beat=False)
        loop.start_worker("housekeeping", beat=False)
    else:
        loop.start_worker()
    return loop


def stop_loop(loop: Loop) -> None:
    for worker in loop.extra_workers.values():
        worker.stop()
    if loop.worker is not None:
        loop.worker.stop()
    loop.service.process.stop()
    for log in sorted(loop.data_dir.glob("worker-*.log")):
        print_log_tail(log, 60)
    print_log_tail(loop.service.process.log_path, 40)


@pytest.fixture
def loop(tmp_path, redis_server, label_studio):
    running = start_loop(tmp_path, redis_server, label_studio)
    try:
        yield running
    finally:
        stop_loop(running)
