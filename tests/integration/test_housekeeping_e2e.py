"""Housekeeping never delays the loop, against a real Label Studio 1.23.2 and a worker per queue.

A clean-up of thousands of old predictions runs on the housekeeping worker while annotations train
a new version on the training worker; the housekeeping worker is killed mid-clean-up and, once
restarted, beat resumes the clean-up from where it stopped, leaving exactly the serving tag's
predictions.
"""
from __future__ import annotations

import os
import signal

import pytest

from tests.integration.conftest import start_loop, stop_loop, wait_for
from tests.integration.test_label_studio_e2e import annotate
from tests.integration.test_scoring_e2e import (all_tasks, assert_exactly_one, new_project, pushed, sms_texts,
                                                train_from_sample)
from tests.integration.test_training_loop_e2e import connect

# What it checks is the workers' and Label Studio's (queues, deletions); the clean-up's record in the
# database is tested on both databases in tests/learning/scoring/test_cleanup.py.
pytestmark = [pytest.mark.integration, pytest.mark.database_independent]


def cleanup_state(loop, pid: int) -> tuple | None:
    found = loop.rows("SELECT c.deleted, c.finished_at, c.after_task FROM learning_predictioncleanup c "
                      f"JOIN learning_project p ON p.id = c.project_id WHERE p.ls_project_id = {int(pid)}")
    return found[0] if found else None


def tags(ls, pid: int) -> dict[str, int]:
    return ls.api("GET", f"/api/projects/{pid}/model-versions/")


def test_a_training_goes_on_beside_a_long_clean_up_which_resumes_after_its_worker_was_killed(
        tmp_path, redis_server, label_studio):
    ls = label_studio
    # One deletion at a time keeps the clean-up of 1,500 predictions going for a while.
    loop = start_loop(tmp_path, redis_server, ls, {"ALO_CLEANUP_THREADS": "1", "ALO_RECONCILE_SECONDS": "3"},
                      per_queue=True)
    try:
        rows = sms_texts(1500)
        pid = new_project(ls, "housekeeping e2e", rows)
        tasks = all_tasks(ls, pid)
        truth = {t["id"]: label for t, (label, _) in zip(tasks, rows)}
        connect(ls, loop, pid, {"min_annotations": 10, "retrain_every": 1000, "quiet_seconds": 2})
        wait_for(lambda: pushed(loop, pid, "cold-start", trigger="connect"), timeout=300, what="the cold start's push")
        v1 = train_from_sample(loop, pid, tmp_path)  # its push makes the cold start's 1,500 predictions stale
        wait_for(lambda: pushed(loop, pid, v1), timeout=300, what=f"the push of {v1}")
        wait_for(lambda: (cleanup_state(loop, pid) or (0,))[0] > 0, timeout=120, what="the clean-up to begin")

        # Annotations while it deletes: the training worker trains and serves a new version meanwhile.
        seed = ([t for t in tasks if truth[t["id"]] == "spam"][:6] + [t for t in tasks if truth[t["id"]] == "ham"][:6])
        for task in seed:
            annotate(ls, task, truth[task["id"]])
        wait_for(lambda: any(v["status"] == "serving" and v["version"] != v1 for v in loop.versions(pid)),
                 timeout=120, what="a version trained beside the clean-up")
        deleted, finished, _ = cleanup_state(loop, pid)
        assert finished is None and "cold-start" in tags(ls, pid), "the clean-up ended before the training"
        v2 = next(v["version"] for v in loop.versions(pid) if v["status"] == "serving")

        # The housekeeping worker killed mid-clean-up, started again: beat resumes the clean-up from
        # where it stopped, once it has not moved for a while (the test ages it instead of waiting).
        wait_for(lambda: pushed(loop, pid, v2), timeout=300, what=f"the push of {v2}")
        wait_for(lambda: cleanup_state(loop, pid)[1] is None and cleanup_state(loop, pid)[0] > 0, timeout=180,
                 what="the clean-up after the second push to be deleting")
        killed = loop.extra_workers["housekeeping"]
        os.killpg(killed.pgid, signal.SIGKILL)
        killed.stop()
        stopped_at = cleanup_state(loop, pid)
        assert stopped_at[1] is None and len(tags(ls, pid)) > 1
        loop.service.env["ALO_CLEANUP_THREADS"] = "4"  # the rest at the usual pace
        loop.start_worker("housekeeping", beat=False)
        loop.service.shell(
            "from datetime import timedelta; from django.utils import timezone; "
            "from orchestrator.learning.models import PredictionCleanup; "
            "PredictionCleanup.objects.update(moved_at=timezone.now() - timedelta(minutes=10))")
        wait_for(lambda: set(tags(ls, pid)) == {v2}, timeout=600,
                 what=f"the clean-up to resume and leave only {v2}'s predictions")
        assert cleanup_state(loop, pid)[1] is not None
        assert len(assert_exactly_one(ls, pid, v2)) == 1500 - 12
        assert tags(ls, pid) == {v2: 1500 - 12}
    finally:
        stop_loop(loop)
