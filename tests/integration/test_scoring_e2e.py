"""The push loop end to end: every unlabeled task scored and ordered in Label Studio's Data Manager.

Real Label Studio 1.23.2, real Redis, a real Celery worker (with beat), real MLflow. The
assertions read Label Studio's API only, except where they say otherwise.
"""
from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest

from tests.conftest import SMS_CONFIG, SMS_POOL, sms_rows
from tests.integration.conftest import start_loop, stop_loop, wait_for
from tests.integration.test_label_studio_e2e import annotate
from tests.integration.test_training_loop_e2e import connect
from tests.support.fault_proxy import FaultProxy

pytestmark = pytest.mark.integration

QUEUE = "Active learning queue"


def sms_texts(n: int) -> list[tuple[str, str]]:
    """n distinct real SMS (label, text)."""
    rows = sms_rows(n, path=SMS_POOL)
    assert len(rows) == n
    return rows


def import_tasks(ls, project_id: int, rows) -> None:
    for start in range(0, len(rows), 2000):
        ls.api("POST", f"/api/projects/{project_id}/import",
               json=[{"text": text, "truth": label} for label, text in rows[start:start + 2000]])


def new_project(ls, title: str, rows) -> int:
    """A Label Studio project with the SMS config and one task per row; its id."""
    pid = ls.api("POST", "/api/projects", json={"title": title, "label_config": SMS_CONFIG})["id"]
    import_tasks(ls, pid, rows)
    return pid


def all_tasks(ls, project_id: int) -> list[dict]:
    tasks, page = [], 1
    while True:
        body = ls.api("GET", "/api/tasks", params={"project": project_id, "page": page, "page_size": 1000,
                                                   "include": "id,data,total_annotations"})
        tasks += body["tasks"]
        if len(tasks) >= body["total"] or not body["tasks"]:
            return sorted(tasks, key=lambda t: t["id"])
        page += 1


def predictions_by_task(ls, project_id: int) -> dict[int, list[dict]]:
    found = collections.defaultdict(list)
    for prediction in ls.api("GET", "/api/predictions", params={"project": project_id}):
        found[prediction["task"]].append(prediction)
    return found


def assert_exactly_one(ls, project_id: int, tag: str) -> list[int]:
    """Every task without annotations has exactly one prediction of `tag`; returns those tasks."""
    unlabeled = [t["id"] for t in all_tasks(ls, project_id) if t["total_annotations"] == 0]
    found = predictions_by_task(ls, project_id)
    counts = collections.Counter(len([p for p in found[task] if p["model_version"] == tag]) for task in unlabeled)
    assert counts == {1: len(unlabeled)}, f"predictions of {tag} per unlabeled task: {dict(counts)}"
    return unlabeled


def train_from_sample(loop, pid: int, tmp_path) -> str:
    """A version trained on 300 labeled SMS (not the project's tasks) and promoted; its version string."""
    sample = tmp_path / "seed.tsv"
    sample.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in sms_rows(300)))
    loop.service.manage("train_project", "--project", str(pid), "--from-file", str(sample))
    return loop.versions(pid)[-1]["version"]


def scoring_runs(loop, ls_project_id: int) -> list[dict]:
    columns = ("id", "tag", "mode", "trigger", "status", "total", "done", "attempts", "error")
    rows = loop.rows(
        "SELECT r.id, r.tag, r.mode, r.trigger, r.status, r.total, r.done, r.attempts, r.error "
        "FROM learning_scoringrun r JOIN learning_project p ON p.id = r.project_id "
        f"WHERE p.ls_project_id = {int(ls_project_id)} ORDER BY r.id")
    return [dict(zip(columns, row)) for row in rows]


def pushed(loop, pid: int, tag: str, trigger: str | None = None) -> bool:
    return any(r["tag"] == tag and r["status"] == "succeeded" and (trigger is None or r["trigger"] == trigger)
               for r in scoring_runs(loop, pid))


def queue_view(ls, project_id: int) -> dict:
    views = [v for v in ls.api("GET", "/api/dm/views", params={"project": project_id})
             if v["data"].get("title") == QUEUE]
    assert len(views) == 1, views
    return views[0]


def expected_scores(loop, model_uri: str, tasks: list[dict]) -> dict[int, float]:
    """Recomputed here from the registered model in MLflow: 1 - the priority of a new project's strategy (margin)."""
    import mlflow

    import strategies
    from backends import artefacts

    mlflow.set_tracking_uri(f"sqlite:///{loop.data_dir / 'mlflow.db'}")
    mlflow.set_registry_uri(f"sqlite:///{loop.data_dir / 'mlflow.db'}")
    # The registered version's own files, read as the service reads them (backends/artefacts.py).
    pipeline = artefacts.load(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    probabilities = pipeline.predict_proba([t["data"]["text"] for t in tasks])
    scores = 1.0 - strategies.priorities("margin", probabilities=probabilities)
    return {t["id"]: float(s) for t, s in zip(tasks, scores)}


def assert_queue_order(ls, loop, pid: int, model_uri: str) -> list[int]:
    """The view's first 50 tasks are the 50 most informative, in order, by the model in MLflow."""
    view = queue_view(ls, pid)
    first = ls.api("GET", "/api/tasks", params={"project": pid, "view": view["id"], "page": 1, "page_size": 50,
                                                "fields": "all"})["tasks"]
    unlabeled = [t for t in all_tasks(ls, pid) if t["total_annotations"] == 0]
    expected = expected_scores(loop, model_uri, unlabeled)
    listed = [expected[t["id"]] for t in first]
    assert len(first) == 50 and all(t["total_annotations"] == 0 for t in first)
    assert listed == sorted(listed), "the queue is not most informative first"
    best = sorted(expected.values())[:50]
    assert np.allclose(listed, best, atol=2e-6), (listed[:5], best[:5])
    assert np.allclose([t["predictions_score"] for t in first], listed, atol=2e-6)
    return [t["id"] for t in first]


def test_every_unlabeled_task_is_scored_and_the_queue_follows_the_newest_model(tmp_path, redis_server, label_studio):
    ls = label_studio
    loop = start_loop(tmp_path, redis_server, ls)
    try:
        rows = sms_texts(2000)
        pid = new_project(ls, "push e2e", rows)
        tasks = all_tasks(ls, pid)
        connect(ls, loop, pid, {"min_annotations": 10, "retrain_every": 1000, "quiet_seconds": 3})
        truth = {t["id"]: label for t, (label, _) in zip(tasks, rows)}
        # Connecting pushed the cold start's order (and drew the stop set).
        wait_for(lambda: pushed(loop, pid, "cold-start", trigger="connect"), timeout=180, what="the cold start's push")

        # The first 30 annotations: the first 10 spam and 20 ham messages of the pool.
        seed = ([t for t in tasks if truth[t["id"]] == "spam"][:10] + [t for t in tasks if truth[t["id"]] == "ham"][:20])
        for task in sorted(seed, key=lambda t: t["id"]):
            annotate(ls, task, truth[task["id"]])
        wait_for(lambda: any(v["status"] == "serving" for v in loop.versions(pid)), timeout=180,
                 what="the first version")
        v1 = next(v for v in loop.versions(pid) if v["status"] == "serving")
        wait_for(lambda: pushed(loop, pid, v1["version"]), timeout=240, what=f"the push of {v1['version']}")

        # Through Label Studio's API only: one prediction of v1 on each of the 1,970 unlabeled tasks,
        # the project's model_version is v1, and the queue view lists the most informative first.
        assert len(assert_exactly_one(ls, pid, v1["version"])) == 1970
        assert ls.api("GET", f"/api/projects/{pid}")["model_version"] == v1["version"]
        first_v1 = assert_queue_order(ls, loop, pid, v1["model_uri"])

        # 30 more annotations (the most informative ones, as an annotator following the queue would):
        # a new version, a new push, and the queue re-sorts with nothing of v1 left.
        for task_id in first_v1[:30]:
            annotate(ls, {"id": task_id}, truth[task_id])
        wait_for(lambda: any(v["status"] == "serving" and v["version"] != v1["version"] for v in loop.versions(pid)),
                 timeout=180, what="the second version")
        v2 = next(v for v in loop.versions(pid) if v["status"] == "serving")
        wait_for(lambda: pushed(loop, pid, v2["version"]), timeout=240, what=f"the push of {v2['version']}")
        assert len(assert_exactly_one(ls, pid, v2["version"])) == 1940
        assert ls.api("GET", f"/api/projects/{pid}")["model_version"] == v2["version"]
        # v1's and the cold start's predictions no longer count for the sort; the clean-up deletes
        # them, one by one (it never holds Label Studio's database for long: the annotations above
        # were saved while it ran).
        wait_for(lambda: set(ls.api("GET", f"/api/projects/{pid}/model-versions/")) == {v2["version"]}, timeout=240,
                 what=f"the predictions of {v1['version']} and the cold start to be deleted")
        assert ls.api("GET", f"/api/projects/{pid}/model-versions/") == {v2["version"]: 1940}
        first_v2 = assert_queue_order(ls, loop, pid, v2["model_uri"])
        assert not set(first_v2) & set(first_v1[:30])

        # Each version's agreement with the previous one on the stop set, and the stopping state.
        stopping = {version: (kappa, suggested) for version, kappa, suggested in loop.rows(
            "SELECT v.version, v.stop_kappa, v.stop_suggested FROM learning_modelversion v "
            f"JOIN learning_project p ON p.id = v.project_id WHERE p.ls_project_id = {int(pid)}")}
        assert stopping[v1["version"]] == (None, 0)  # nothing to agree with yet
        kappa, suggested = stopping[v2["version"]]
        assert kappa is not None and -1.0 <= kappa <= 1.0 and suggested == 0  # two versions cannot suggest stopping
    finally:
        stop_loop(loop)


def test_a_connected_project_is_ordered_by_the_cold_start_before_any_annotation(tmp_path, redis_server, label_studio):
    """No model yet: connecting pushes the diversity order; the queue starts with one task per cluster, and
    /predict scores a task as the push did."""
    import requests

    from backends import features
    from strategies.cold_start import CLUSTERS, ColdStartOrder

    ls = label_studio
    loop = start_loop(tmp_path, redis_server, ls)
    try:
        pid = new_project(ls, "cold start e2e", sms_texts(1000))
        backend = connect(ls, loop, pid, {"min_annotations": 10, "retrain_every": 1000, "quiet_seconds": 3})
        assert backend["model_version"] == "cold-start"
        wait_for(lambda: pushed(loop, pid, "cold-start", trigger="connect"), timeout=180, what="the cold start's push")
        assert len(assert_exactly_one(ls, pid, "cold-start")) == 1000
        assert ls.api("GET", f"/api/projects/{pid}")["model_version"] == "cold-start"

        # The order the service fitted, read from its database; the texts placed here with the same vectors.
        (data,), = loop.rows("SELECT c.data FROM learning_coldstart c JOIN learning_project p ON p.id = c.project_id "
                             f"WHERE p.ls_project_id = {int(pid)}")
        order = ColdStartOrder.loads(data)
        features.set_cache_dir(tmp_path / "features")
        tasks = all_tasks(ls, pid)
        clusters, _ = order.place(features.cold_start_vectors([t["data"]["text"] for t in tasks]))
        cluster_of = {t["id"]: int(c) for t, c in zip(tasks, clusters)}

        k = len(order.centres)
        assert CLUSTERS - 3 <= k <= CLUSTERS  # (k-means centres left without a member are dropped)
        view = queue_view(ls, pid)
        first = ls.api("GET", "/api/tasks", params={"project": pid, "view": view["id"], "page": 1,
                                                    "page_size": k, "fields": "all"})["tasks"]
        listed = [t["predictions_score"] for t in first]
        assert listed == sorted(listed)
        assert len({cluster_of[t["id"]] for t in first}) == k  # one task per cluster first
        every = sorted(p["score"] for p in ls.api("GET", "/api/predictions", params={"project": pid}))
        assert np.allclose(listed, every[:k], atol=2e-6)

        answer = requests.post(f"{loop.service.url}/predict", timeout=60, json={
            "tasks": [{"id": t["id"], "data": t["data"]} for t in first[:5]], "project": f"{pid}.0",
            "label_config": SMS_CONFIG}).json()
        assert [r["model_version"] for r in answer["results"]] == ["cold-start"] * 5
        assert np.allclose([r["score"] for r in answer["results"]], listed[:5], atol=2e-6)
    finally:
        stop_loop(loop)


@pytest.mark.parametrize("setup", ["label_studio", "label_studio_memory_efficient"],
                         ids=["default-import", "memory-efficient-import"])
def test_pushes_that_fail_midway_resume_to_exactly_one_prediction_per_task(tmp_path, redis_server, request, setup):
    """Lost answers, timeouts and an outage on the import endpoint; the rerun completes the push.

    Also on a Label Studio with its memory-efficient import, which stores each request in
    batches of 500 without one transaction (the README recommends it for large projects)."""
    ls = request.getfixturevalue(setup)
    state = {"down": False, "armed": False, "before": 0}
    faults = {2: "lost", 4: "fail", 5: "slow", 7: "lost"}

    def rule(method: str, path: str, n: int) -> str:
        if not state["armed"]:  # the cold start's push on connect goes through untouched
            state["before"] = n
            return "pass"
        n -= state["before"]
        if state["down"]:
            return "fail"
        if n == 9:  # from the 9th import on, Label Studio stays down until the test says otherwise
            state["down"] = True
            return "fail"
        return faults.get(n, "pass")

    proxy = FaultProxy(ls.url, match=lambda method, path: "/import/predictions" in path, rule=rule,
                       slow_seconds=12).start()
    loop = start_loop(tmp_path, redis_server, ls, {"LABEL_STUDIO_URL": proxy.url, "LABEL_STUDIO_TIMEOUT": "10",
                                                   "LABEL_STUDIO_RETRY_BACKOFF": "0.2", "LABEL_STUDIO_RETRIES": "3"})
    try:
        rows = sms_texts(3000)
        pid = new_project(ls, "push faults", rows)
        connect(ls, loop, pid, {"auto_train": False})
        wait_for(lambda: pushed(loop, pid, "cold-start", trigger="connect"), timeout=180, what="the cold start's push")
        state["armed"] = True
        loop.service.shell(
            "from orchestrator.learning.models import Project, ScoringPolicy; "
            f"ScoringPolicy.objects.update_or_create(project=Project.objects.get(ls_project_id={pid}), "
            "defaults={'chunk_size': 250})")
        tag = train_from_sample(loop, pid, tmp_path)

        # The promotion queued a push; the injected faults are retried, then the outage fails it.
        wait_for(lambda: any(r["status"] == "failed" for r in scoring_runs(loop, pid)), timeout=240,
                 what="the push to fail during the outage")
        failed = scoring_runs(loop, pid)[-1]
        assert failed["tag"] == tag and "503" in failed["error"] and 0 < failed["done"] < 3000, failed
        # The chunks that landed already order the queue's head (the rest sorts last until resumed).
        assert ls.api("GET", f"/api/projects/{pid}")["model_version"] == tag

        # Label Studio is back; the rerun resumes the same run and completes it.
        state["down"] = False
        proxy.rule = lambda method, path, n: "pass"
        out = loop.service.manage("score_project", "--project", str(pid))
        assert f"scoring run {failed['id']}: succeeded" in out, out
        assert len(assert_exactly_one(ls, pid, tag)) == 3000
        assert ls.api("GET", f"/api/projects/{pid}")["model_version"] == tag
        actions = collections.Counter(action for _, _, _, action, _ in proxy.log)
        assert actions["lost"] == 2 and actions["slow"] == 1 and actions["fail"] >= 3, actions
    finally:
        stop_loop(loop)
        proxy.stop()


def test_new_tasks_and_the_schedule_push_predictions(tmp_path, redis_server, label_studio):
    ls = label_studio
    loop = start_loop(tmp_path, redis_server, ls)
    try:
        rows = sms_texts(400)
        pid = new_project(ls, "push triggers", rows[:300])
        connect(ls, loop, pid, {"auto_train": False})
        tag = train_from_sample(loop, pid, tmp_path)
        wait_for(lambda: pushed(loop, pid, tag, "promotion"), timeout=120, what="the push after promotion")

        # Tasks imported later: Label Studio's TASKS_CREATED webhook gets them scored, same tag.
        import_tasks(ls, pid, rows[300:350])
        wait_for(lambda: pushed(loop, pid, tag, "tasks_created"), timeout=120, what="the new tasks to be scored")
        assert len(assert_exactly_one(ls, pid, tag)) == 350

        # Automatic pushes off; a schedule (django-celery-beat, fired by beat) catches up instead.
        loop.service.shell(
            "from orchestrator.learning.models import Project, ScoringPolicy; "
            f"ScoringPolicy.objects.filter(project__ls_project_id={pid}).update(auto_push=False)")
        import_tasks(ls, pid, rows[350:400])
        loop.service.manage("schedule_scoring", "--project", str(pid), "--every-minutes", "0.05")
        wait_for(lambda: pushed(loop, pid, tag, "schedule"), timeout=120, what="beat to run the scheduled scoring")
        assert len(assert_exactly_one(ls, pid, tag)) == 400
        schedule = json.loads(loop.service.shell(
            "import json; from django_celery_beat.models import PeriodicTask; "
            f"t = PeriodicTask.objects.get(name='re-score project {pid}'); "
            "print(json.dumps({'task': t.task, 'args': t.args, 'every': t.interval.every}))"))
        assert schedule == {"task": "orchestrator.learning.tasks.rescore_project", "args": f"[{pid}]", "every": 3}
        assert ls.api("GET", f"/api/projects/{pid}")["model_version"] == tag
        # Jobs run below the web processes' CPU priority (ALO_WORKER_NICE, default 10).
        assert os.getpriority(os.PRIO_PROCESS, loop.worker.pid) - os.getpriority(os.PRIO_PROCESS, 0) == 10

        # The pushes read their tasks from the service's mirror. Tasks deleted in Label Studio (one through
        # the task API, three through the Data Manager's bulk action) and data edited in place, the schedule
        # off first (its runs would bring the mirror up themselves):
        loop.service.manage("schedule_scoring", "--project", str(pid), "--off")
        wait_for(lambda: all(r["status"] not in ("queued", "running") for r in scoring_runs(loop, pid)), timeout=60,
                 what="the last scheduled run to end")
        tasks = all_tasks(ls, pid)
        ls.api("DELETE", f"/api/tasks/{tasks[0]['id']}")
        ls.api("POST", "/api/dm/actions", params={"id": "delete_tasks", "project": pid},
               json={"selectedItems": {"all": False, "included": [t["id"] for t in tasks[1:4]]}})
        edited = tasks[10]["id"]
        ls.api("PATCH", f"/api/tasks/{edited}", json={"data": {"text": "edited after import: URGENT call now",
                                                                "truth": "spam"}})
        out = loop.service.manage("sync_tasks", "--project", str(pid))
        assert "changes:" in out and "removed 4" in out and "the mirror holds 396 tasks" in out, out
        assert "updated 0" in out  # an edit in place has no webhook: a whole read finds it
        out = loop.service.manage("sync_tasks", "--project", str(pid), "--full")
        assert "full: read 396, added 0, updated 1, removed 0" in out, out
        mirrored = json.loads(loop.service.shell(
            "import json; from orchestrator.learning.models import MirroredTask; "
            f"print(json.dumps(dict(MirroredTask.objects.filter(project__ls_project_id={pid})"
            ".values_list('task_id', 'data'))))"))
        assert {int(k): v for k, v in mirrored.items()} == {t["id"]: t["data"] for t in all_tasks(ls, pid)}
        # A full re-score from the mirror: every task Label Studio still has, once.
        loop.service.manage("score_project", "--project", str(pid))
        rescored = scoring_runs(loop, pid)[-1]
        assert rescored["status"] == "succeeded" and rescored["tag"] != tag, rescored
        assert len(assert_exactly_one(ls, pid, rescored["tag"])) == 396
    finally:
        stop_loop(loop)
