"""The annotation store follows Label Studio: after any sequence of creates, edits, skips and deletions,
with their webhooks delivered or lost, it gives exactly the training examples a full re-read gives.

Label Studio is an in-memory model of what the store reads (tasks' `updated_at` bumped by every
annotation save or delete, the Data Manager's filters, the project's counts), on its own clock.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from backends import backend_for
from orchestrator.gateways import label_studio, label_studio_tasks
from orchestrator.learning import annotation_store
from orchestrator.learning.models import StoredTask, WebhookEvent
from orchestrator.learning.training.dataset import examples_from_tasks
from tests.conftest import SMS_CONFIG, sms_rows


class LabelStudioAnnotations:
    """Tasks and annotations with Label Studio's semantics for what the store asks."""

    def __init__(self, texts: list[str]) -> None:
        self.clock = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
        self.tasks = {i + 1: {"id": i + 1, "data": {"text": t}, "annotations": [], "updated_at": self._tick()}
                      for i, t in enumerate(texts)}
        self.next_annotation = 1
        self.requests = {"whole": 0, "changes": 0, "stamps": 0, "by_id": 0, "ids": 0}

    def _tick(self) -> str:
        self.clock += timedelta(seconds=7)
        return self.clock.isoformat().replace("+00:00", "Z")

    # --- what annotators and admins do
    def annotate(self, task_id: int, label: str, *, skip: bool = False, ground_truth: bool = False) -> dict:
        stamp = self._tick()
        annotation = {"id": self.next_annotation, "task": task_id, "was_cancelled": skip, "ground_truth": ground_truth,
                      "result": [] if skip else [{"from_name": "label", "to_name": "text", "type": "choices",
                                                  "value": {"choices": [label]}}],
                      "created_at": stamp, "updated_at": stamp, "prediction": {"result": "a snapshot"}}
        self.next_annotation += 1
        self.tasks[task_id]["annotations"].append(annotation)
        self.tasks[task_id]["updated_at"] = stamp
        return annotation

    def edit(self, annotation_id: int, label: str) -> dict:
        task, annotation = self._find(annotation_id)
        stamp = self._tick()
        annotation["result"] = [{"from_name": "label", "to_name": "text", "type": "choices",
                                 "value": {"choices": [label]}}]
        annotation["updated_at"] = task["updated_at"] = stamp
        return annotation

    def delete_annotation(self, annotation_id: int) -> None:
        task, annotation = self._find(annotation_id)
        task["annotations"].remove(annotation)
        task["updated_at"] = self._tick()

    def delete_task(self, task_id: int) -> None:
        del self.tasks[task_id]

    def touch_by_prediction(self, task_id: int) -> None:
        """A prediction saved or deleted (the clean-up does that): Label Studio bumps the task too."""
        self.tasks[task_id]["updated_at"] = self._tick()

    def _find(self, annotation_id: int):
        for task in self.tasks.values():
            for annotation in task["annotations"]:
                if annotation["id"] == annotation_id:
                    return task, annotation
        raise KeyError(annotation_id)

    def annotation_ids(self) -> list[int]:
        return [a["id"] for t in self.tasks.values() for a in t["annotations"]]

    # --- the gateway's functions
    def _copy(self, task: dict) -> dict:
        return {"id": task["id"], "data": dict(task["data"]), "updated_at": task["updated_at"],
                "annotations": [dict(a) for a in task["annotations"]]}

    def _labeled(self, task: dict) -> bool:
        return any(not a["was_cancelled"] for a in task["annotations"])

    def iter_annotated_tasks(self, ls_project_id, *, page_size=500, updated_since=None, counted=True):
        if counted:
            self.requests["changes" if updated_since else "whole"] += 1
        since = datetime.strptime(updated_since, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc) \
            if updated_since else None
        for task_id in sorted(self.tasks):
            task = self.tasks[task_id]
            updated = datetime.fromisoformat(task["updated_at"].replace("Z", "+00:00"))
            if self._labeled(task) and (since is None or updated >= since):
                yield self._copy(task)

    def annotated_stamps(self, ls_project_id, *, updated_since=None, page_size=5000):
        self.requests["stamps"] += 1
        return {task["id"]: task["updated_at"] for task in self.iter_annotated_tasks(
            ls_project_id, updated_since=updated_since, counted=False)}

    def tasks_by_id(self, ls_project_id, task_ids, batch=500):
        self.requests["by_id"] += 1
        return [self._copy(self.tasks[i]) for i in sorted(set(task_ids)) if i in self.tasks]

    def annotated_task_ids(self, ls_project_id, page_size=5000):
        self.requests["ids"] += 1
        return {i for i, t in self.tasks.items() if self._labeled(t)}

    def newest_update(self, ls_project_id):
        return max((t["updated_at"] for t in self.tasks.values()), default=None)

    def annotation_counts(self, ls_project_id):
        annotations = [a for t in self.tasks.values() for a in t["annotations"]]
        return len(annotations), sum(a["was_cancelled"] for a in annotations)


@pytest.fixture
def ls(monkeypatch):
    fake = LabelStudioAnnotations([text for _, text in sms_rows(60)])
    monkeypatch.setattr(label_studio, "is_configured", lambda: True)
    for name in ("iter_annotated_tasks", "annotated_stamps", "tasks_by_id", "annotated_task_ids", "annotation_counts",
                 "newest_update"):
        monkeypatch.setattr(label_studio_tasks, name, getattr(fake, name))
    monkeypatch.setattr(annotation_store, "SEEN_MARGIN_SECONDS", 1)  # the fake's clock moves 7 s a change
    return fake


def _full_read(ls) -> tuple:
    tasks = [ls._copy(ls.tasks[i]) for i in sorted(ls.tasks) if ls._labeled(ls.tasks[i])]
    return _dataset(tasks)


def _dataset(tasks) -> tuple:
    dataset = examples_from_tasks(backend_for(SMS_CONFIG), tasks)
    return dataset.examples, dataset.annotation_ids, dataset.digest


def _stored(project) -> tuple:
    return _dataset(list(annotation_store.stored_tasks(project)))


def _webhook(project, action: str, *, annotation_ids=(), task_ids=()) -> None:
    WebhookEvent.objects.create(project=project, ls_project_id=project.ls_project_id, action=action,
                                annotation_ids=list(annotation_ids), task_ids=list(task_ids))


@pytest.mark.parametrize("seed", range(12))
def test_after_random_changes_and_lost_webhooks_the_store_gives_what_a_full_read_gives(sms_project, ls, seed):
    rng = random.Random(seed)
    labels = ("ham", "spam")
    checks = 0
    for step in range(160):
        kind = rng.choices(["annotate", "skip", "edit", "delete", "delete_task", "prediction", "check"],
                           weights=[30, 6, 14, 10, 3, 8, 12])[0]
        delivered = rng.random() < 0.6  # the rest of the webhooks are lost
        existing = ls.annotation_ids()
        if kind in ("annotate", "skip") and ls.tasks:
            task_id = rng.choice(sorted(ls.tasks))
            annotation = ls.annotate(task_id, rng.choice(labels), skip=kind == "skip", ground_truth=rng.random() < 0.1)
            if delivered:
                _webhook(sms_project, "ANNOTATION_CREATED", annotation_ids=[annotation["id"]], task_ids=[task_id])
        elif kind == "edit" and existing:
            annotation = ls.edit(rng.choice(existing), rng.choice(labels))
            if delivered:
                _webhook(sms_project, "ANNOTATION_UPDATED", annotation_ids=[annotation["id"]])
        elif kind == "delete" and existing:
            gone = rng.sample(existing, min(len(existing), rng.randint(1, 3)))
            for annotation_id in gone:
                ls.delete_annotation(annotation_id)
            if delivered:
                _webhook(sms_project, "ANNOTATIONS_DELETED", annotation_ids=gone)
        elif kind == "delete_task" and ls.tasks:
            task_id = rng.choice(sorted(ls.tasks))
            ls.delete_task(task_id)
            if delivered:
                _webhook(sms_project, "TASKS_DELETED", task_ids=[task_id])
        elif kind == "prediction" and ls.tasks:
            ls.touch_by_prediction(rng.choice(sorted(ls.tasks)))
        elif kind == "check":
            annotation_store.sync(sms_project)
            checks += 1
            assert _stored(sms_project) == _full_read(ls), f"seed {seed}, step {step}"
    annotation_store.sync(sms_project)
    assert _stored(sms_project) == _full_read(ls)
    assert checks > 5 and ls.requests["whole"] == 1  # one whole read (the first); then only what changed


def test_a_check_reads_only_what_changed_and_a_task_left_without_annotations_leaves(sms_project, ls):
    for task_id in range(1, 41):
        ls.annotate(task_id, "ham" if task_id % 3 else "spam")
    first = annotation_store.sync(sms_project)
    assert first.mode == "full" and first.stored == 40 and StoredTask.objects.filter(project=sms_project).count() == 40
    edited = ls.tasks[5]["annotations"][0]["id"]
    ls.edit(edited, "spam")
    ls.annotate(50, "ham")
    report = annotation_store.sync(sms_project)
    # Listed: the two changed tasks and task 40, whose time the first read began at ("at or after" it);
    # read whole: only the two whose stamps differ from the stored ones.
    assert report.mode == "changes" and report.listed == 3 and report.read == 2 and report.stored == 2
    assert not report.listed_ids
    # The only annotation of task 7 deleted, its webhook delivered: read again by id, and it leaves the store.
    only = ls.tasks[7]["annotations"][0]["id"]
    ls.delete_annotation(only)
    _webhook(sms_project, "ANNOTATIONS_DELETED", annotation_ids=[only])
    report = annotation_store.sync(sms_project)
    assert report.removed == 1 and not report.listed_ids
    assert not StoredTask.objects.filter(project=sms_project, task_id=7).exists()
    # The same, webhook lost: the count tells, the ids say which.
    lost = ls.tasks[8]["annotations"][0]["id"]
    ls.delete_annotation(lost)
    report = annotation_store.sync(sms_project)
    assert report.removed == 1 and report.listed_ids and report.reason == "annotation count differs"
    assert _stored(sms_project) == _full_read(ls)
    # The prediction snapshot an annotation carries is not kept.
    assert "prediction" not in sms_project.stored_annotations.first().body
    assert annotation_store.counts(sms_project) == {"tasks": 39, "annotations": 39, "skipped": 0}


def test_a_whole_read_on_demand_replaces_what_the_store_had(sms_project, ls):
    for task_id in range(1, 11):
        ls.annotate(task_id, "ham")
    annotation_store.sync(sms_project)
    StoredTask.objects.filter(project=sms_project, task_id=3).update(data={"text": "tampered"})
    ls.delete_task(4)
    report = annotation_store.sync(sms_project, full=True)
    assert report.mode == "full" and report.reason == "asked" and report.removed == 1
    assert _stored(sms_project) == _full_read(ls)


def test_once_the_newest_change_settled_a_check_stops_reading_a_big_import_again(sms_project, ls, monkeypatch):
    """Tasks imported together carry stamps within seconds of each other: while recent, each check reads
    them again (a transaction may still commit among them); once settled, only what is newer."""
    from datetime import timedelta

    from django.utils import timezone

    from orchestrator.learning.models import AnnotationStoreState

    monkeypatch.setattr(annotation_store, "SEEN_MARGIN_SECONDS", 30)
    for task_id in range(1, 41):  # 7 s apart on Label Studio's clock: all 40 within 5 minutes
        ls.annotate(task_id, "ham" if task_id % 2 else "spam")
    annotation_store.sync(sms_project)
    again = annotation_store.sync(sms_project)
    assert (again.listed, again.read) == (5, 0)  # those stamped in the last 30 s of the newest (4 x 7 s), unchanged
    AnnotationStoreState.objects.filter(project=sms_project).update(seen_at=timezone.now() - timedelta(minutes=2))
    settled = annotation_store.sync(sms_project)
    assert (settled.listed, settled.read) == (1, 0)  # settled: the newest task only (at or after its stamp)
    ls.annotate(41, "spam")
    report = annotation_store.sync(sms_project)
    assert (report.listed, report.read, report.stored) == (2, 1, 1)
    assert _stored(sms_project) == _full_read(ls)
