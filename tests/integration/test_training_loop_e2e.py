"""The training loop end to end: Label Studio's webhooks → Celery on Redis → MLflow → served version.

Real Label Studio 1.23.2, real Redis, a real Celery worker (with beat), real MLflow.
"""
from __future__ import annotations

import concurrent.futures
import copy
import os
import signal

import pytest
import requests

from tests.conftest import SMS_CONFIG, recorded, sms_rows
from tests.integration.conftest import print_log_tail, start_loop, stop_loop, wait_for
from tests.integration.test_label_studio_e2e import annotate, create_project
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import free_port

pytestmark = pytest.mark.integration


def choice(label: str) -> list[dict]:
    return [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]


def import_annotated(ls, project_id: int, rows) -> list[dict]:
    """Tasks that arrive with their annotations (an import sends no annotation webhooks)."""
    ls.api("POST", f"/api/projects/{project_id}/import",
           json=[{"data": {"text": text}, "annotations": [{"result": choice(label)}]} for label, text in rows])
    tasks = ls.api("GET", "/api/tasks", params={"project": project_id, "page_size": 10_000, "fields": "all"})["tasks"]
    return sorted(tasks, key=lambda t: t["id"])


def connect(ls, loop, project_id: int, training: dict) -> dict:
    return ls.api("POST", "/api/ml", json={"project": project_id, "url": loop.service.url, "title": "AL orchestrator",
                                           "extra_params": {"training": training}})


def test_annotations_in_label_studio_train_a_version_tracked_in_mlflow_server(tmp_path, redis_server, label_studio):
    """With the MLflow tracking server: Label Studio's own webhooks lead to a served, registered version."""
    from mlflow import MlflowClient

    mlflow = MlflowServer(tmp_path / "mlflow").start()
    loop = start_loop(tmp_path, redis_server, label_studio, {"MLFLOW_TRACKING_URI": mlflow.url})
    try:
        ls = label_studio
        rows = sms_rows(150)
        project, tasks = create_project(ls, rows)
        pid = project["id"]
        backend = connect(ls, loop, pid, {"min_annotations": 10, "retrain_every": 1000, "quiet_seconds": 3})
        assert backend["model_version"] == "cold-start"

        # 30 annotations through Label Studio's API: Label Studio itself sends the webhooks.
        for task, (label, _) in zip(tasks[:30], rows[:30]):
            annotate(ls, task, label)
        wait_for(lambda: loop.idle(pid) and any(r["status"] == "succeeded" for r in loop.runs(pid)), timeout=120,
                 what="the annotations to be trained on")
        runs = loop.runs(pid)
        run = runs[-1]
        # Normally one run, after 3 s of quiet; a pause of Label Studio mid-way can add one. The last saw all 30.
        assert all(r["trigger"] == "quiet" for r in runs) and sum(r["num_events"] for r in runs) == 30, runs
        trained = [r for r in runs if r["status"] == "succeeded"]
        assert run["status"] == "succeeded" and run["promoted"] and run["num_annotations"] == 30, runs
        version = run["version"]
        assert version == f"p{pid}-v{len(trained)}"
        # MLflow (server mode): run with metrics and params, registered version, serving alias.
        client = MlflowClient(tracking_uri=mlflow.url, registry_uri=mlflow.url)
        name = f"label-studio-project-{pid}"
        registered = max(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version))
        assert client.get_model_version_by_alias(name, "champion").version == registered.version
        mlflow_run = client.get_run(registered.run_id)
        assert mlflow_run.data.metrics["num_examples"] == 30 and 0 <= mlflow_run.data.metrics["macro_f1"] <= 1
        assert {"count_ham", "count_spam", "accuracy"} <= set(mlflow_run.data.metrics)
        assert mlflow_run.data.params["model_version"] == version
        assert mlflow_run.data.params["num_annotations"] == "30" and mlflow_run.data.params["data_digest"]

        # The service reports it, Label Studio shows it, /predict answers with it.
        key = f"{pid}.0"
        wait_for(lambda: loop.setup_version(key, SMS_CONFIG) == version, what="/setup to report the new version")
        versions = requests.get(f"{loop.service.url}/versions", params={"project": key}, timeout=10).json()
        assert versions["versions"][0] == version and versions["current_versions"] == [version]
        wait_for(lambda: ls.api("GET", f"/api/ml/{backend['id']}")["model_version"] == version,
                 what="Label Studio's ML backend to show the new version")
        answer = requests.post(f"{loop.service.url}/predict", timeout=60, json={
            "tasks": [tasks[100]], "project": key, "label_config": SMS_CONFIG}).json()
        assert answer["results"][0]["model_version"] == version and answer["results"][0]["result"]

        # "Start Training" in Label Studio on the annotations the version learned says so, and
        # makes no duplicate version; after one more annotation it trains.
        ls.api("POST", f"/api/ml/{backend['id']}/train", json={})
        wait_for(lambda: loop.runs(pid)[-1]["trigger"] == "start_training" and loop.runs(pid)[-1]["status"] == "skipped",
                 timeout=120, what="Start Training on unchanged annotations to be skipped")
        assert f"the annotations are the ones {version} learned" in loop.runs(pid)[-1]["detail"]
        assert len(loop.versions(pid)) == len(trained)
        annotate(ls, tasks[30], rows[30][0])
        ls.api("POST", f"/api/ml/{backend['id']}/train", json={})
        wait_for(lambda: loop.runs(pid)[-1]["status"] == "succeeded" and loop.runs(pid)[-1]["version"] != version,
                 timeout=120, what="Start Training after a new annotation to produce a new version")
        last = loop.runs(pid)[-1]
        assert last["version"] != version and last["num_annotations"] == 31
        wait_for(lambda: loop.setup_version(key, SMS_CONFIG) == last["version"], what="the new version to serve")
        assert client.get_model_version_by_alias(name, "champion").version != registered.version
    finally:
        stop_loop(loop)
        mlflow.stop()
        print_log_tail(mlflow.process.log_path, 20)


def project_webhooks(ls, project_id: int) -> list[dict]:
    return ls.api("GET", "/api/webhooks/", params={"project": project_id})


def event_count(loop, project_id: int) -> int:
    (count,), = loop.rows(f"SELECT COUNT(*) FROM learning_webhookevent WHERE ls_project_id = {int(project_id)}")
    return count


def test_with_a_webhook_secret_only_label_studio_gets_through(tmp_path, redis_server, label_studio):
    """The service signs Label Studio's webhook to it; forged calls are refused and store nothing;
    Start Training (basic auth) on unchanged annotations makes no duplicate version."""
    secret, user, password = "s3cret-header-value", "ls-backend", "pw-for-label-studio"
    loop = start_loop(tmp_path, redis_server, label_studio, {
        "ALO_WEBHOOK_SECRET": secret, "BASIC_AUTH_USER": user, "BASIC_AUTH_PASS": password})
    try:
        ls = label_studio
        rows = sms_rows(80)
        project, tasks = create_project(ls, rows)
        pid = project["id"]
        backend = ls.api("POST", "/api/ml", json={
            "project": pid, "url": loop.service.url, "title": "AL orchestrator", "auth_method": "BASIC_AUTH",
            "basic_auth_user": user, "basic_auth_pass": password,
            "extra_params": {"training": {"min_annotations": 10, "retrain_every": 1000, "quiet_seconds": 3}}})
        assert backend["state"] == "CO", backend
        # Label Studio made its webhook to the service; the service added its header to it (no second one).
        url = f"{loop.service.url}/webhook"
        wait_for(lambda: [h["headers"] for h in project_webhooks(ls, pid) if h["url"].rstrip("/") == url]
                 == [{"X-Alo-Webhook-Secret": secret}], timeout=60, what="the service to sign its webhook")

        # Forged calls: an annotation and three Start Trainings, without the header, are refused.
        before = event_count(loop, pid)
        forged = webhook_body("ANNOTATION_CREATED", {"id": pid}, tasks[0], {"id": 999, "result": choice("spam")})
        for body in [forged] + [{"action": "START_TRAINING", "project": {"id": pid}}] * 3:
            answer = requests.post(url, json=body, timeout=10)
            assert answer.status_code == 401 and "X-Alo-Webhook-Secret" in answer.json()["detail"]
        wrong = requests.post(url, json=forged, headers={"X-Alo-Webhook-Secret": "guess"}, timeout=10)
        assert wrong.status_code == 401
        assert event_count(loop, pid) == before

        # Annotations in Label Studio: its signed webhooks arrive and train a version.
        for task, (label, _) in zip(tasks[:20], rows[:20]):
            annotate(ls, task, label)
        wait_for(lambda: any(r["status"] == "succeeded" for r in loop.runs(pid)) and loop.idle(pid), timeout=120,
                 what="the signed annotation webhooks to train a version")
        trained = [r for r in loop.runs(pid) if r["status"] == "succeeded"]
        assert sum(r["num_events"] for r in loop.runs(pid)) == 20 and trained[-1]["num_annotations"] == 20
        version = trained[-1]["version"]

        # Label Studio's Start Training (basic auth, no header) gets through, and on the same
        # annotations trains nothing new.
        ls.api("POST", f"/api/ml/{backend['id']}/train", json={})
        wait_for(lambda: loop.runs(pid)[-1]["trigger"] == "start_training" and loop.runs(pid)[-1]["status"] == "skipped",
                 timeout=120, what="Start Training on unchanged annotations to be skipped")
        assert f"the annotations are the ones {version} learned" in loop.runs(pid)[-1]["detail"]
        assert [v["version"] for v in loop.versions(pid)] == [r["version"] for r in trained]
    finally:
        stop_loop(loop)


def webhook_body(action: str, project: dict, task: dict, annotation: dict) -> dict:
    body = copy.deepcopy(recorded("webhook-annotation_created")["body"])
    body["action"] = action
    body["project"].update({"id": project["id"], "label_config": SMS_CONFIG})
    body["task"] = {**body["task"], "id": task["id"], "data": task["data"], "project": project["id"]}
    body["annotation"] = {**body["annotation"], "id": annotation["id"], "task": task["id"], "project": project["id"],
                          "result": annotation["result"]}
    return body


def test_a_burst_of_duplicated_out_of_order_webhooks_trains_a_few_times_on_everything(loop, label_studio):
    ls = label_studio
    project = ls.api("POST", "/api/projects", json={"title": "burst", "label_config": SMS_CONFIG})
    pid = project["id"]
    tasks = import_annotated(ls, pid, sms_rows(300))
    connect(ls, loop, pid, {"min_annotations": 10, "retrain_every": 25, "quiet_seconds": 2})

    # 300 annotations, each announced twice, updates before creations: 600 deliveries in a few seconds.
    bodies = [webhook_body(action, project, task, task["annotations"][0])
              for action in ("ANNOTATION_UPDATED", "ANNOTATION_CREATED") for task in reversed(tasks)]
    bodies += bodies[::7]
    session = requests.Session()

    def send(body):
        return session.post(f"{loop.service.url}/webhook", json=body, timeout=10).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(send, bodies))
    assert codes == [201] * len(bodies)

    wait_for(lambda: loop.idle(pid) and loop.runs(pid), timeout=180, what="the burst to be trained on")
    runs = loop.runs(pid)
    trained = [r for r in runs if r["status"] == "succeeded"]
    assert 1 <= len(trained) <= 3, runs
    assert all(r["status"] in {"succeeded", "skipped"} for r in runs), runs
    assert trained[-1]["num_annotations"] == 300
    assert all("learned" in r["detail"] for r in runs if r["status"] == "skipped"), runs
    versions = loop.versions(pid)
    assert len({v["version"] for v in versions}) == len(versions) == len(trained)
    assert [v["status"] for v in versions][-1] == "serving"


def test_a_failing_training_keeps_the_old_version_and_the_worker(loop, label_studio, tmp_path):
    ls = label_studio
    project = ls.api("POST", "/api/projects", json={"title": "failing", "label_config": SMS_CONFIG})
    pid = project["id"]
    import_annotated(ls, pid, [("ham", text) for label, text in sms_rows(200) if label == "ham"][:40])
    backend = connect(ls, loop, pid, {"min_annotations": 10})
    key = f"{pid}.0"
    sample = tmp_path / "seed.tsv"
    sample.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in sms_rows(200)))
    out = loop.service.manage("train_project", "--project", str(pid), "--from-file", str(sample))
    assert out.startswith(f"p{pid}-v1 serving"), out

    ls.api("POST", f"/api/ml/{backend['id']}/train", json={})
    wait_for(lambda: any(r["status"] == "failed" for r in loop.runs(pid)), timeout=120, what="the run to fail")
    (failed,) = loop.runs(pid)
    assert "all 40 annotations choose 'ham'" in failed["detail"] and failed["version"] == f"p{pid}-v2"
    assert [v["status"] for v in loop.versions(pid)] == ["serving", "failed"]
    assert loop.setup_version(key, SMS_CONFIG) == f"p{pid}-v1"
    assert loop.worker.running

    # The same worker trains once the data can train a model.
    import_annotated(ls, pid, [("spam", text) for label, text in sms_rows(200) if label == "spam"][:20])
    ls.api("POST", f"/api/ml/{backend['id']}/train", json={})
    wait_for(lambda: loop.runs(pid)[-1]["status"] == "succeeded", timeout=120, what="the next run to succeed")
    assert loop.runs(pid)[-1]["num_annotations"] == 60
    wait_for(lambda: loop.setup_version(key, SMS_CONFIG) == f"p{pid}-v3", what="v3 to serve")


def test_label_studio_unreachable_retries_then_fails_and_keeps_serving(tmp_path, redis_server, label_studio):
    """The service is pointed at a Label Studio that is down: retries with backoff, then a failed run."""
    closed = f"http://127.0.0.1:{free_port()}"
    loop = start_loop(tmp_path, redis_server, label_studio, {
        "LABEL_STUDIO_URL": closed, "LABEL_STUDIO_RETRIES": "3", "LABEL_STUDIO_RETRY_BACKOFF": "0.2"})
    try:
        pid = 990_001
        key = f"{pid}.1700000000"
        requests.post(f"{loop.service.url}/setup", json={"project": key, "schema": SMS_CONFIG}, timeout=10).raise_for_status()
        sample = tmp_path / "seed.tsv"
        sample.write_text("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in sms_rows(200)))
        loop.service.manage("train_project", "--project", str(pid), "--from-file", str(sample))
        body = copy.deepcopy(recorded("webhook-start_training")["body"])
        body["project"]["id"] = pid
        assert requests.post(f"{loop.service.url}/webhook", json=body, timeout=10).status_code == 201
        wait_for(lambda: any(r["status"] == "failed" for r in loop.runs(pid)), timeout=120, what="the run to fail")
        (run,) = loop.runs(pid)
        assert "after 3 attempt(s)" in run["detail"], run
        assert loop.setup_version(key, SMS_CONFIG) == f"p{pid}-v1"
        # The training's read (the promotion's push, failing the same way, retries on its own).
        assert loop.worker.log_text().count("label_studio_retry what=counting annotations") == 2
    finally:
        stop_loop(loop)


def test_a_worker_killed_mid_training_leaves_nothing_half_done_and_the_training_is_redone(
        tmp_path, redis_server, label_studio):
    loop = start_loop(tmp_path, redis_server, label_studio, {
        "ALO_TRAINING_LEASE_SECONDS": "4", "ALO_RECONCILE_SECONDS": "3", "CELERY_VISIBILITY_TIMEOUT": "8",
        # Small pages make reading 1,500 annotations take long enough to be killed in the middle.
        "LABEL_STUDIO_PAGE_SIZE": "20"})
    try:
        ls = label_studio
        project = ls.api("POST", "/api/projects", json={"title": "killed", "label_config": SMS_CONFIG})
        pid = project["id"]
        rows = sms_rows()
        import_annotated(ls, pid, [(label, f"{text} #{i}") for i, (label, text) in enumerate(rows * 3)][:1500])
        backend = connect(ls, loop, pid, {"min_annotations": 10})
        ls.api("POST", f"/api/ml/{backend['id']}/train", json={})
        wait_for(lambda: any(r["status"] == "running" for r in loop.runs(pid)), timeout=60,
                 what="the training to start")
        os.killpg(loop.worker.pgid, signal.SIGKILL)
        loop.worker.stop()
        (killed,) = loop.runs(pid)
        assert killed["status"] == "running"
        assert loop.setup_version(f"{pid}.0", SMS_CONFIG) == "cold-start"  # nothing half-done serves

        loop.start_worker()
        wait_for(lambda: any(r["status"] == "succeeded" for r in loop.runs(pid)), timeout=180,
                 what="the training to be redone by the restarted worker")
        runs = loop.runs(pid)
        assert runs[0]["status"] == "failed" and "worker stopped" in runs[0]["detail"], runs
        done = [r for r in runs if r["status"] == "succeeded"]
        assert done[-1]["num_annotations"] == 1500
        statuses = [v["status"] for v in loop.versions(pid)]
        assert "training" not in statuses and statuses.count("serving") == 1, statuses
        wait_for(lambda: loop.setup_version(f"{pid}.0", SMS_CONFIG) == done[-1]["version"], what="it to serve")
    finally:
        stop_loop(loop)
