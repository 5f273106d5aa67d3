"""The task mirror follows Label Studio: after any sequence of imports and deletions, with their webhooks
delivered or lost, it holds exactly Label Studio's tasks and their data, reading only what changed.

Label Studio is the scoring tests' in-memory one (tests/support/fake_label_studio.py): tasks by id,
numbered in creation order, and the requests the mirror makes counted.
"""
from __future__ import annotations

import random
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from orchestrator.learning import task_mirror
from orchestrator.learning.models import MirroredTask, TaskMirrorState, WebhookEvent


def _mirrored(project) -> dict[int, str]:
    return {task_id: data["text"] for task_id, data in
            MirroredTask.objects.filter(project=project).values_list("task_id", "data")}


def _tasks_deleted(project, task_ids) -> None:
    WebhookEvent.objects.create(project=project, ls_project_id=project.ls_project_id, action="TASKS_DELETED",
                                task_ids=list(task_ids))


class Imports:
    """Label Studio numbering new tasks after every id it ever gave (a deleted task's id is never reused)."""

    def __init__(self, ls) -> None:
        self.ls, self.next_id = ls, max(ls.texts) + 1

    def add(self, count: int, rng: random.Random) -> list[int]:
        ids = list(range(self.next_id, self.next_id + count))
        self.next_id += count
        for task_id in ids:
            self.ls.texts[task_id] = f"imported {task_id}: {rng.random():.6f}"
        return ids


@pytest.mark.parametrize("seed", range(10))
def test_after_random_imports_and_deletions_with_lost_webhooks_the_mirror_is_label_studio(sms_project, fake_ls, seed):
    rng = random.Random(seed)
    imports = Imports(fake_ls)
    first = task_mirror.sync(sms_project)
    assert first.mode == "full" and first.added == len(fake_ls.texts) and _mirrored(sms_project) == fake_ls.texts
    created = checks = 0
    for step in range(120):
        kind = rng.choices(["import", "delete", "delete_newest", "check"], weights=[30, 30, 8, 20])[0]
        delivered = rng.random() < 0.6  # the rest of the webhooks are lost
        if kind == "import":
            created += len(imports.add(rng.randint(1, 40), rng))
        elif kind in ("delete", "delete_newest") and fake_ls.texts:
            ids = sorted(fake_ls.texts)
            gone = ids[-rng.randint(1, 3):] if kind == "delete_newest" else rng.sample(ids, min(len(ids), rng.randint(1, 30)))
            for task_id in gone:
                del fake_ls.texts[task_id]
            if delivered:
                _tasks_deleted(sms_project, gone)
        elif kind == "check":
            reads = fake_ls.reads
            report = task_mirror.sync(sms_project)
            checks += 1
            assert report.mode == "changes", f"seed {seed}, step {step}"
            assert _mirrored(sms_project) == fake_ls.texts, f"seed {seed}, step {step}"
            # Data is read for new tasks only: one request a page of them, and one that finds none.
            assert fake_ls.reads - reads <= 2 + report.added // 5000 + bool(report.listed_ids), f"seed {seed}, step {step}"
    task_mirror.sync(sms_project)
    assert _mirrored(sms_project) == fake_ls.texts
    state = TaskMirrorState.objects.get(project=sms_project)
    assert checks > 5 and state.full_reads == 1 and created > 0  # one whole read (the first); then only what changed


def test_a_check_reads_new_tasks_and_deletions_it_was_told_of_without_listing_every_id(sms_project, fake_ls):
    task_mirror.sync(sms_project)
    rng = random.Random(0)
    new = Imports(fake_ls).add(25, rng)
    for task_id in (3, 4, 5):
        del fake_ls.texts[task_id]
    _tasks_deleted(sms_project, [3, 4, 5])
    _tasks_deleted(sms_project, [7])  # a forged (or stale) webhook: task 7 is still there
    report = task_mirror.sync(sms_project)
    assert (report.added, report.removed, report.listed_ids) == (25, 3, False)
    assert fake_ls.id_listings == 0 and _mirrored(sms_project) == fake_ls.texts and 7 in _mirrored(sms_project)
    # A deletion whose webhook was lost: the count differs, the ids say which.
    del fake_ls.texts[new[0]], fake_ls.texts[10]
    report = task_mirror.sync(sms_project)
    assert report.listed_ids and report.removed == 2 and fake_ls.id_listings == 1
    assert _mirrored(sms_project) == fake_ls.texts
    # Nothing changed: one request that finds no new task, one count, no listing.
    reads = fake_ls.reads
    report = task_mirror.sync(sms_project)
    assert (report.read, report.added, report.removed, report.listed_ids) == (0, 0, 0, False)
    assert fake_ls.reads == reads + 1 and fake_ls.id_listings == 1


def test_data_edited_in_label_studio_is_read_again_by_a_whole_read_when_due_or_asked(sms_project, fake_ls, settings):
    task_mirror.sync(sms_project)
    fake_ls.texts[12] = "edited in Label Studio after the import"
    assert task_mirror.sync(sms_project).updated == 0  # no webhook, no count: a check cannot see it
    report = task_mirror.sync(sms_project, full=True)
    assert (report.mode, report.reason, report.updated) == ("full", "asked", 1)
    assert _mirrored(sms_project)[12] == fake_ls.texts[12]
    fake_ls.texts[13] = "edited again"
    settings.ALO_TASK_MIRROR_FULL_HOURS = 24
    TaskMirrorState.objects.filter(project=sms_project).update(full_read_at=timezone.now() - timedelta(hours=25))
    report = task_mirror.sync(sms_project)
    assert report.mode == "full" and report.reason == "last whole read over 24 h ago" and report.updated == 1
    settings.ALO_TASK_MIRROR_FULL_HOURS = 0  # only on demand
    TaskMirrorState.objects.filter(project=sms_project).update(full_read_at=timezone.now() - timedelta(days=30))
    assert task_mirror.sync(sms_project).mode == "changes"


def test_the_pool_is_the_mirrored_tasks_label_studio_does_not_count_as_labeled(sms_project, fake_ls):
    task_mirror.sync(sms_project)
    fake_ls.labeled = {2, 4, 9, 2500}
    labeled = task_mirror.labeled_ids(sms_project)
    assert labeled.tolist() == [2, 4, 9, 2500]
    pool = task_mirror.unlabeled_ids(sms_project, after_id=3, labeled=labeled)
    assert pool.dtype == np.int64 and pool.tolist() == [i for i in range(4, 2500) if i != 4 and i != 9]
    tasks = task_mirror.tasks_of(sms_project, pool[:3])
    assert tasks == [{"id": i, "data": {"text": fake_ls.texts[i]}} for i in (5, 6, 7)]
    assert task_mirror.tasks_of(sms_project, np.array([], dtype=np.int64)) == []


def test_the_sync_tasks_command_reads_whole_on_demand(sms_project, fake_ls, capsys):
    call_command("sync_tasks", "--project", str(sms_project.ls_project_id))
    fake_ls.texts[1] = "edited"
    call_command("sync_tasks", "--project", str(sms_project.ls_project_id), "--full")
    out = capsys.readouterr().out
    assert "full: read 2500, added 2500" in out and "full: read 2500, added 0, updated 1, removed 0" in out
    assert "the mirror holds 2500 tasks" in out
    from django.core.management import CommandError
    with pytest.raises(CommandError, match="project 999 is unknown"):
        call_command("sync_tasks", "--project", "999")


def test_sync_now_waits_for_no_push_and_holds_the_scoring_lease_while_it_reads(sms_project, fake_ls, monkeypatch):
    from orchestrator.gateways import label_studio_tasks
    from orchestrator.learning import leases

    owner = leases.new_owner()
    assert leases.acquire(sms_project.pk, owner, kind="scoring")
    assert task_mirror.sync_now(sms_project.pk) == "a push holds the project: it brings the mirror up itself"
    assert not MirroredTask.objects.filter(project=sms_project).exists()
    leases.release(sms_project.pk, owner, kind="scoring")
    assert task_mirror.sync_now(sms_project.pk).startswith("full: read 2500")
    others = []

    def count_while_another_push_tries(ls_project_id):  # a check's count: another push asks for the lease now
        others.append(leases.acquire(sms_project.pk, leases.new_owner(), kind="scoring"))
        return len(fake_ls.texts)

    monkeypatch.setattr(label_studio_tasks, "task_count", count_while_another_push_tries)
    assert task_mirror.sync_now(sms_project.pk).startswith("changes: read 0")
    assert others == [False]  # held while it read
    assert leases.acquire(sms_project.pk, leases.new_owner(), kind="scoring")  # and released after
