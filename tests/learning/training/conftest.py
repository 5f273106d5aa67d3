"""Fixtures of the training loop's tests: checks asked for, and Label Studio's side of a training read."""
from __future__ import annotations

import pytest

from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning.training import loop


class AnnotatedTasks:
    """Label Studio's side of a training read: the tasks `iter_annotated_tasks` yields (a list,
    or a function of the project id, which may raise) and the count `annotation_count` answers."""

    def __init__(self) -> None:
        self.source, self.count = [], None

    def iter_annotated_tasks(self, ls_project_id, *, page_size=500):
        return iter(self.source(ls_project_id) if callable(self.source) else self.source)

    def annotation_count(self, ls_project_id):
        if self.count is not None:
            return self.count
        return 0 if callable(self.source) else len(self.source)


@pytest.fixture
def reads(monkeypatch):
    fake = AnnotatedTasks()
    monkeypatch.setattr(label_studio, "is_configured", lambda: True)
    monkeypatch.setattr(label_studio, "iter_annotated_tasks", fake.iter_annotated_tasks)
    monkeypatch.setattr(label_studio, "annotation_count", fake.annotation_count)
    return fake


@pytest.fixture
def train_on(reads):
    """Train a project now on these annotated tasks (and Label Studio's count of annotations)."""

    def train(project, *, trigger, tasks, count=None):
        reads.source, reads.count = tasks, count
        return loop.train_now(project, trigger=trigger)

    return train


@pytest.fixture
def queued_checks(jobs_sent):
    """Checks sent to the broker, as (project pk, countdown)."""
    return jobs_sent.watch(jobs.CHECK_TRAINING, lambda job: (job.args[0], round(job.countdown, 1)))
