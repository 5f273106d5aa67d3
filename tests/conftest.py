"""Shared test set-up: an isolated data folder, and factories for projects and models.

Environment is set before Django reads its settings, so no test touches ./data.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

_DATA_DIR = tempfile.mkdtemp(prefix="alo-test-")
os.environ["ALO_DATA_DIR"] = _DATA_DIR
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{_DATA_DIR}/mlflow.db")
os.environ.setdefault("MLFLOW_ARTIFACT_ROOT", f"{_DATA_DIR}/mlartifacts")
# The audit sample moves every tenth task of a queue and holds its labels out of training: tests that
# reason about the strategy's order or a training set's size run without it; the audit's own tests set it.
os.environ.setdefault("ALO_AUDIT_SHARE", "0")
for name in ("BASIC_AUTH_USER", "BASIC_AUTH_PASS", "LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY"):
    os.environ.pop(name, None)

# The suite runs on SQLite unless tests/with_postgres.py started a PostgreSQL for it
# (it sets ALO_TEST_DATABASE=postgresql and DATABASE_URL before pytest starts).
if os.environ.get("ALO_TEST_DATABASE", "sqlite") == "sqlite":
    os.environ.pop("DATABASE_URL", None)

import pytest  # noqa: E402

TESTS_DIR = Path(__file__).resolve().parent
FIXTURES_DIR = TESTS_DIR / "fixtures" / "label-studio"
SMS_SAMPLE = TESTS_DIR / "data" / "sms_sample.tsv"
SMS_POOL = TESTS_DIR / "data" / "sms_pool.tsv"  # 3,000 messages, for projects of a few thousand tasks

SMS_CONFIG = (
    '<View><Text name="text" value="$text"/>'
    '<Choices name="label" toName="text"><Choice value="ham"/><Choice value="spam"/></Choices></View>'
)
URL_CONFIG = ('<View><Text name="text" value="$url" valueType="url"/><Choices name="label" toName="text">'
              '<Choice value="ham"/><Choice value="spam"/></Choices></View>')  # texts are files on Label Studio


def recorded(name: str) -> dict:
    """A request recorded from a real Label Studio 1.23.2 (method, path, headers, body)."""
    return json.loads((FIXTURES_DIR / f"{name}.json").read_text())


def sms_rows(limit: int | None = None, *, path: Path = SMS_SAMPLE) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(reader)
        rows = [(label, text) for label, text in reader]
    return rows[:limit] if limit else rows


def pytest_report_header(config):
    from django.conf import settings

    return f"database: {settings.DATABASES['default']['ENGINE']}"


class SentJobs(list):
    """The jobs services asked for, in order, instead of messages to a broker (see `jobs_sent`)."""

    def __init__(self) -> None:
        super().__init__()
        self.run_at_once: dict[str, object] = {}  # task name -> a function that runs the job here
        self._watchers: list[tuple[str, object, list]] = []

    def watch(self, task: str, view=lambda job: job.args[0]) -> list:
        """A list that receives `view(job)` for each job of `task` sent from now on."""
        seen: list = []
        self._watchers.append((task, view, seen))
        return seen

    def record(self, task: str, args: tuple, countdown: float) -> None:
        from orchestrator.jobs import Job

        job = Job(task, tuple(args), countdown)
        self.append(job)
        for name, view, seen in self._watchers:
            if name == task:
                seen.append(view(job))
        if task in self.run_at_once:
            self.run_at_once[task](*args)


@pytest.fixture(autouse=True)
def _audit_share(settings):
    """ALO_AUDIT_SHARE as set above (pytest-django reads the settings before this module runs)."""
    settings.AUDIT_SHARE = float(os.environ["ALO_AUDIT_SHARE"])


@pytest.fixture
def label_studio_files(settings, monkeypatch):
    """The configured Label Studio serving each task file as `free prize <path>`, slowly (0.05 s), counting
    the reads (`paths`) and the most that overlapped (`at_once`); a path with "bad" in it answers 500
    with a body that must not be echoed."""
    import threading
    import time

    from orchestrator.gateways import label_studio

    settings.LABEL_STUDIO_URL, settings.LABEL_STUDIO_API_KEY = "http://ls.internal:8080", "key"
    monkeypatch.setattr(label_studio, "_texts", label_studio._TextCache(10))
    seen = {"at_once": 0, "running": 0, "paths": []}
    lock = threading.Lock()

    def request(method, path, **kwargs):
        with lock:
            seen["running"] += 1
            seen["at_once"] = max(seen["at_once"], seen["running"])
            seen["paths"].append(path)
        time.sleep(0.05)
        with lock:
            seen["running"] -= 1
        if "bad" in path:
            raise label_studio.LabelStudioError(f"GET {path} answered 500: Traceback ... SECRET_KEY=abc", 500)
        return type("Response", (), {"text": f"free prize {path}"})()

    monkeypatch.setattr(label_studio, "_request", request)
    return seen


@pytest.fixture
def jobs_sent(monkeypatch):
    """Background work asked for through `orchestrator.jobs`, recorded instead of sent.

    pytest-django runs each test inside a transaction that never commits; the services ask
    for jobs outside any transaction of their own, where the seam sends at once, so that is
    what happens here too: only a transaction opened by the code under test defers a job.
    """
    from django.db import connection, transaction

    from orchestrator import jobs

    sent = SentJobs()
    monkeypatch.setattr(jobs, "send", sent.record)
    on_commit = transaction.on_commit

    def on_commit_outside_the_test_case(func, using=None, robust=False):
        if all(getattr(block, "_from_testcase", False) for block in connection.atomic_blocks):
            return func()
        return on_commit(func, using, robust)

    monkeypatch.setattr(transaction, "on_commit", on_commit_outside_the_test_case)
    return sent


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    from orchestrator.learning.model_cache import model_cache

    model_cache.clear()
    yield
    model_cache.clear()


@pytest.fixture
def sms_project(db):
    """A project with the SMS ham/spam config, registered as /setup would."""
    from orchestrator.learning.projects import setup_project

    return setup_project(project_key="7.1717171717", label_config=SMS_CONFIG)


@pytest.fixture
def trained_sms_project(sms_project):
    """The SMS project with a model trained on 400 real texts, promoted to serving."""
    from orchestrator.learning.training.fit import train_model_version
    from tests.factories import examples

    version = train_model_version(project=sms_project, examples=examples(sms_rows(400)))
    sms_project.refresh_from_db()
    return sms_project, version


@pytest.fixture
def two_versions(trained_sms_project):
    """The SMS project serving its second version; the first is ready (it served before)."""
    from orchestrator.learning.training.fit import train_model_version
    from tests.factories import examples

    project, first = trained_sms_project
    second = train_model_version(project=project, examples=examples(sms_rows(300)))
    project.refresh_from_db()
    first.refresh_from_db()
    assert project.serving_version == second
    return project, first, second
