"""The annotation store against a real Label Studio 1.23.2: trainings read the service's own database, and
edits and deletions made in Label Studio, announced by webhooks or not, reach the next version."""
from __future__ import annotations

import pytest

from tests.conftest import sms_rows
from tests.integration.conftest import start_loop, stop_loop, wait_for
from tests.integration.test_label_studio_e2e import annotate, create_project
from tests.integration.test_training_loop_e2e import choice, connect, project_webhooks

pytestmark = pytest.mark.integration


def stored(loop, pid: int) -> dict[int, list]:
    """The store's annotations of a project: annotation id -> (task id, choices, was_cancelled)."""
    rows = loop.rows(
        "SELECT a.annotation_id, a.task_id, a.body, a.was_cancelled FROM learning_storedannotation a "
        f"JOIN learning_project p ON p.id = a.project_id WHERE p.ls_project_id = {int(pid)}")
    import json

    out = {}
    for annotation_id, task_id, body, cancelled in rows:
        body = json.loads(body) if isinstance(body, str) else body
        labels = [c for r in body.get("result") or () for c in r.get("value", {}).get("choices", [])]
        out[annotation_id] = (task_id, labels, bool(cancelled))
    return out


def in_label_studio(ls, pid: int) -> dict[int, list]:
    tasks = ls.api("GET", "/api/tasks", params={"project": pid, "page_size": 1000, "fields": "all"})["tasks"]
    return {a["id"]: (t["id"], [c for r in a["result"] or () for c in r["value"].get("choices", [])],
                      bool(a["was_cancelled"]))
            for t in tasks if t.get("total_annotations") for a in t["annotations"]}


def last_trained(loop, pid: int) -> dict:
    return [r for r in loop.runs(pid) if r["status"] == "succeeded"][-1]


def test_edits_and_deletions_in_label_studio_reach_the_next_version_through_the_store(
        tmp_path, redis_server, label_studio):
    loop = start_loop(tmp_path, redis_server, label_studio, {"ALO_RECONCILE_SECONDS": "3"})
    ls = label_studio
    try:
        rows = sms_rows(60)
        project, tasks = create_project(ls, rows)
        pid = project["id"]
        connect(ls, loop, pid, {"min_annotations": 10, "retrain_every": 1000, "quiet_seconds": 2})
        made = [annotate(ls, task, label) for task, (label, _) in zip(tasks[:20], rows[:20])]
        # A skip on a task nobody annotated: nothing to learn, not stored.
        ls.api("POST", f"/api/tasks/{tasks[20]['id']}/annotations", json={"result": [], "was_cancelled": True})
        wait_for(lambda: loop.idle(pid) and loop.runs(pid) and last_trained(loop, pid)["num_annotations"] == 20,
                 timeout=120, what="a version trained on the 20 annotations")
        assert stored(loop, pid) == in_label_studio(ls, pid)

        # Announced by webhooks: one annotation edited, one deleted.
        edited, deleted = made[0], made[1]
        flipped = "spam" if rows[0][0] == "ham" else "ham"
        ls.api("PATCH", f"/api/annotations/{edited['id']}", json={"result": choice(flipped)})
        ls.api("DELETE", f"/api/annotations/{deleted['id']}")
        wait_for(lambda: loop.idle(pid) and last_trained(loop, pid)["num_annotations"] == 19, timeout=120,
                 what="a version without the deleted annotation")
        now = stored(loop, pid)
        assert deleted["id"] not in now and now[edited["id"]][1] == [flipped]
        assert now == in_label_studio(ls, pid)
        before = last_trained(loop, pid)["version"]

        # Unannounced: the project's webhooks removed, then an edit. Beat's check of the store
        # (Label Studio's tasks updated since the newest change seen) finds it and a version follows.
        for hook in project_webhooks(ls, pid):
            ls.api("DELETE", f"/api/webhooks/{hook['id']}")
        quiet = made[2]
        again = "spam" if rows[2][0] == "ham" else "ham"
        ls.api("PATCH", f"/api/annotations/{quiet['id']}", json={"result": choice(again)})
        wait_for(lambda: last_trained(loop, pid)["version"] != before, timeout=120,
                 what="beat's store check to notice the unannounced edit and train")
        assert [r["trigger"] for r in loop.runs(pid) if r["version"] == last_trained(loop, pid)["version"]] == ["quiet"]
        assert stored(loop, pid)[quiet["id"]][1] == [again]
        assert stored(loop, pid) == in_label_studio(ls, pid)
        # Trainings read what changed, not the whole project: one whole read (at connect, or the first training).
        (reads,) = loop.rows("SELECT s.full_reads FROM learning_annotationstorestate s JOIN learning_project p "
                             f"ON p.id = s.project_id WHERE p.ls_project_id = {int(pid)}")
        assert reads == (1,)
    finally:
        stop_loop(loop)
