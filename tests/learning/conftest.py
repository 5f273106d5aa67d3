"""Fixtures of the active-learning domain's tests: an in-memory Label Studio, the push jobs asked for."""
from __future__ import annotations

import pytest

from orchestrator import jobs
from orchestrator.gateways import label_studio, label_studio_console, label_studio_tasks
from orchestrator.learning.scoring import cleanup, push
from tests.conftest import SMS_POOL, sms_rows
from tests.support.fake_label_studio import CONSOLE_FAKED, FAKED, TASKS_FAKED, FakeLabelStudio


@pytest.fixture
def fake_ls(monkeypatch, settings):
    """Label Studio as the scoring job sees it: a project of 2,500 real SMS tasks, none labeled."""
    rows = sms_rows(2500, path=SMS_POOL)
    fake = FakeLabelStudio(texts={i + 1: text for i, (_, text) in enumerate(rows)})
    monkeypatch.setattr(label_studio, "is_configured", lambda: True)
    for name in FAKED:
        monkeypatch.setattr(label_studio, name, getattr(fake, name))
    for name in TASKS_FAKED:
        monkeypatch.setattr(label_studio_tasks, name, getattr(fake, name))
    for name in CONSOLE_FAKED:
        monkeypatch.setattr(label_studio_console, name, getattr(fake, name))
    settings.LABEL_STUDIO_RETRY_BACKOFF = 0.0
    settings.LABEL_STUDIO_RETRIES = 3
    monkeypatch.setattr(push, "SETTLE_SECONDS", 0.0)
    return fake


@pytest.fixture
def queued_runs(jobs_sent):
    """Scoring runs sent to the broker (their pks)."""
    # The clean-up of old tags runs at once here (a task of its own in the worker).
    jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS] = cleanup.clean_up
    return jobs_sent.watch(jobs.RUN_SCORING)
