"""Fixtures of the training loop's tests: checks asked for, and Label Studio's side of a training read."""
from __future__ import annotations

import pytest

from orchestrator import jobs
from orchestrator.gateways import label_studio, label_studio_tasks
from orchestrator.learning.training import loop


class AnnotatedTasks:
    """Label Studio's side of a training read: its annotated tasks (a list, or a function of the project
    id, which may raise) and, when set, the count of annotations it answers.

    It answers the annotation store's reads (learning/annotation_store.py) as Label Studio would, except
    that asked for the tasks updated since a time it gives them all (a superset: what a store must cope with).
    """

    def __init__(self) -> None:
        self.source, self.count = [], None
        self.whole_reads = self.change_reads = 0

    def _tasks(self, ls_project_id):
        return list(self.source(ls_project_id) if callable(self.source) else self.source)

    def iter_annotated_tasks(self, ls_project_id, *, page_size=500, updated_since=None):
        if updated_since is None:
            self.whole_reads += 1
        else:
            self.change_reads += 1
        return iter([t for t in self._tasks(ls_project_id) if _live(t)])

    def annotated_stamps(self, ls_project_id, *, updated_since=None, page_size=5000):
        if updated_since is None:
            self.whole_reads += 1
        else:
            self.change_reads += 1
        return {t["id"]: str(t.get("updated_at") or "") for t in self._tasks(ls_project_id) if _live(t)}

    def tasks_by_id(self, ls_project_id, task_ids, batch=500):
        wanted = set(task_ids)
        return [t for t in self._tasks(ls_project_id) if t["id"] in wanted]

    def annotated_task_ids(self, ls_project_id, page_size=5000):
        return {t["id"] for t in self._tasks(ls_project_id) if _live(t)}

    def newest_update(self, ls_project_id):
        return None  # these tasks carry no updated_at: every check asks for all of them

    def annotation_counts(self, ls_project_id):
        if self.count is not None:
            return self.count, 0
        if callable(self.source):
            return 0, 0
        annotations = [a for t in self.source for a in t.get("annotations") or ()]
        return len(annotations), sum(bool(a.get("was_cancelled")) for a in annotations)

    def annotation_count(self, ls_project_id):
        return self.annotation_counts(ls_project_id)[0]


def _live(task) -> bool:
    return any(not a.get("was_cancelled") for a in task.get("annotations") or ())


@pytest.fixture
def reads(monkeypatch):
    fake = AnnotatedTasks()
    monkeypatch.setattr(label_studio, "is_configured", lambda: True)
    for name in ("iter_annotated_tasks", "annotated_stamps", "tasks_by_id", "annotated_task_ids",
                 "annotation_counts", "annotation_count", "newest_update"):
        monkeypatch.setattr(label_studio_tasks, name, getattr(fake, name))
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
