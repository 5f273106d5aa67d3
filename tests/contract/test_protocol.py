"""Contract tests: replay every request a real Label Studio 1.23.2 sent, check each answer."""
from __future__ import annotations

import base64
import copy
import json

import orjson
import pytest

from tests.conftest import SMS_CONFIG, URL_CONFIG, recorded, sms_rows

pytestmark = pytest.mark.django_db

SENTIMENT_CONFIG = recorded("setup")["body"]["schema"]


def replay(client, name: str, body_override=None, **headers):
    request = recorded(name)
    body = request["body"] if body_override is None else body_override
    kwargs = {"content_type": "application/json", "data": orjson.dumps(body)} if body is not None else {}
    response = client.generic(request["method"], request["path"], **kwargs, **headers)
    return response, (orjson.loads(response.content) if response.content else None)


def train_sentiment(project_key: str = "1.1795364173"):
    from backends import Example
    from orchestrator.learning.models import Project
    from orchestrator.learning.training.fit import train_model_version

    project = Project.objects.get(ls_project_id=int(project_key.split(".")[0]))
    words = {"Positive": ["great", "good", "lovely", "fine", "nice"], "Negative": ["bad", "awful", "poor", "sad", "ugly"]}
    examples = [Example(text=f"sample {w} {i}", labels=(label,)) for label, ws in words.items() for i, w in enumerate(ws * 3)]
    return train_model_version(project=project, examples=examples)


def test_health_answers_up_without_touching_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response, body = replay(client, "health")
    assert response.status_code == 200
    assert body["status"] == "UP" and body["model_class"]
    root = client.get("/")
    assert root.status_code == 200 and orjson.loads(root.content)["status"] == "UP"


def test_setup_remembers_the_project_and_returns_a_version(client):
    from orchestrator.learning.models import Project

    response, body = replay(client, "setup")
    assert response.status_code == 200
    assert isinstance(body["model_version"], str) and body["model_version"]
    project = Project.objects.get(ls_project_id=1)
    assert project.ls_project_key == "1.1795364173"
    assert project.label_config == SENTIMENT_CONFIG
    assert project.ls_hostname == "http://127.0.0.1:8080"
    assert "REDACTED" not in str(project.__dict__)  # the access token is never stored


@pytest.mark.parametrize("name", ["predict-retrieve-predictions", "predict-task-open", "predict-interactive"])
def test_predict_cold_start_answers_every_task_in_order(client, name):
    _, setup = replay(client, "setup")
    response, body = replay(client, name)
    tasks = recorded(name)["body"]["tasks"]
    assert response.status_code == 200
    assert len(body["results"]) == len(tasks)
    for result in body["results"]:
        assert result["model_version"] == setup["model_version"]
        assert result["result"] == []
        assert 0.0 <= result["score"] <= 1.0
    # Cold-start scores are stable per task: a second call gives the same numbers.
    _, again = replay(client, name)
    assert [r["score"] for r in again["results"]] == [r["score"] for r in body["results"]]


@pytest.mark.parametrize("name", ["predict-retrieve-predictions", "predict-task-open", "predict-interactive"])
def test_predict_with_a_model_returns_choices_of_the_setup_version(client, name):
    replay(client, "setup")
    version = train_sentiment()
    _, setup = replay(client, "setup")
    assert setup["model_version"] == version.version
    response, body = replay(client, name)
    tasks = recorded(name)["body"]["tasks"]
    assert response.status_code == 200 and len(body["results"]) == len(tasks)
    for task, prediction in zip(tasks, body["results"]):
        assert prediction["model_version"] == version.version
        (region,) = prediction["result"]
        assert region["from_name"] == "sentiment" and region["to_name"] == "text" and region["type"] == "choices"
        (choice,) = region["value"]["choices"]
        assert choice in {"Positive", "Negative"}
        if "great" in task["data"]["text"]:
            assert choice == "Positive", task["data"]["text"]
        # For two choices margin (a new project's strategy) equals least confidence: Label Studio's
        # score is the model's confidence in its choice, rescaled from [1/k, 1] to [0, 1] (k = 2
        # labels here): 1 - (1 - c) * k / (k - 1).
        assert prediction["score"] == pytest.approx(1 - (1 - region["score"]) * 2, abs=1e-5)


@pytest.mark.parametrize(
    "name", ["webhook-annotation_created", "webhook-annotation_updated", "webhook-annotations_deleted",
             "webhook-start_training", "webhook-project_updated"],
)
def test_every_recorded_webhook_is_accepted_and_recorded(client, name):
    from orchestrator.learning.models import WebhookEvent

    response, body = replay(client, name)
    assert response.status_code == 201
    payload = recorded(name)["body"]
    event = WebhookEvent.objects.get(pk=body["event"])
    assert event.action == payload["action"] and event.ls_project_id == 1
    if name == "webhook-annotations_deleted":
        assert event.annotation_ids == [a["id"] for a in payload["annotations"]]
    if name in {"webhook-annotation_created", "webhook-annotation_updated"}:
        assert event.annotation_ids == [payload["annotation"]["id"]]
        assert event.task_ids == [payload["task"]["id"]]


def test_versions_lists_the_current_version(client):
    replay(client, "setup")
    response, body = replay(client, "versions")
    assert response.status_code == 200 and body["versions"] == ["cold-start"]
    version = train_sentiment()
    _, body = replay(client, "versions")
    assert body["versions"][0] == version.version


def test_legacy_train_is_accepted(client):
    tasks = recorded("predict-retrieve-predictions")["body"]["tasks"][:2]
    response = client.post("/train", data=orjson.dumps({"annotations": tasks, "project": "1.1795364173",
                                                        "label_config": SENTIMENT_CONFIG}),
                           content_type="application/json")
    assert response.status_code == 201


def test_two_projects_with_different_labels_are_served_side_by_side(client, trained_sms_project):
    replay(client, "setup")
    train_sentiment()
    sms, _ = trained_sms_project
    sms_answer = client.post("/predict", data=orjson.dumps({
        "tasks": [{"id": 1, "data": {"text": "WINNER!! claim your free prize now, call 0800"}}],
        "project": "7.1717171717", "label_config": SMS_CONFIG}), content_type="application/json")
    _, sentiment = replay(client, "predict-task-open")
    assert orjson.loads(sms_answer.content)["results"][0]["result"][0]["value"]["choices"] == ["spam"]
    assert sentiment["results"][0]["result"][0]["value"]["choices"][0] in {"Positive", "Negative"}


# --- basic auth ---------------------------------------------------------------------------------
@pytest.fixture
def basic_auth(settings):
    settings.BASIC_AUTH_USER, settings.BASIC_AUTH_PASS = "ls", "s3cret"
    return "Basic " + base64.b64encode(b"ls:s3cret").decode()


@pytest.mark.parametrize("name", ["health", "setup", "predict-task-open", "versions"])
def test_basic_auth_protects_the_protocol(client, basic_auth, name):
    response, _ = replay(client, name)
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic")
    wrong = "Basic " + base64.b64encode(b"ls:nope").decode()
    response, _ = replay(client, name, HTTP_AUTHORIZATION=wrong)
    assert response.status_code == 401
    replay(client, "setup", HTTP_AUTHORIZATION=basic_auth)
    response, _ = replay(client, name, HTTP_AUTHORIZATION=basic_auth)
    assert response.status_code == 200


def test_webhooks_are_accepted_without_basic_auth_as_label_studio_sends_them(client, basic_auth):
    response, _ = replay(client, "webhook-annotation_created")
    assert response.status_code == 201


# --- bad input ----------------------------------------------------------------------------------
def post(client, path, raw: bytes):
    response = client.generic("POST", path, data=raw, content_type="application/json")
    return response.status_code, orjson.loads(response.content)


@pytest.mark.parametrize("path", ["/setup", "/predict", "/webhook", "/train"])
def test_malformed_json_is_a_400_naming_the_problem(client, path):
    status, body = post(client, path, b'{"tasks": [')
    assert status == 400 and "not valid JSON" in body["detail"]
    status, body = post(client, path, b"[1, 2]")
    assert status == 400 and "JSON object" in body["detail"]
    status, body = post(client, path, b"")
    assert status == 400 and "empty" in body["detail"]


def test_predict_without_tasks_or_with_bad_tasks(client):
    replay(client, "setup")
    body = copy.deepcopy(recorded("predict-task-open")["body"])
    body.pop("tasks")
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 400 and '"tasks"' in answer["detail"]
    body["tasks"] = "nope"
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 400 and "list" in answer["detail"]
    body["tasks"] = []
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 400 and "empty" in answer["detail"]


def test_predict_task_without_the_data_key_names_task_and_key(client):
    replay(client, "setup")
    body = copy.deepcopy(recorded("predict-retrieve-predictions")["body"])
    body["tasks"][1]["data"] = {"message": "hello"}
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 400
    assert f"task {body['tasks'][1]['id']}" in answer["detail"] and "'text'" in answer["detail"]
    assert "message" in answer["detail"]


def test_setup_with_an_unsupported_config_names_the_tags(client):
    body = copy.deepcopy(recorded("setup")["body"])
    body["schema"] = ('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
                      '<Label value="car"/></RectangleLabels></View>')
    status, answer = post(client, "/setup", orjson.dumps(body))
    assert status == 422
    assert "RectangleLabels" in answer["detail"] and "Image" in answer["detail"]
    assert "text classification" in answer["detail"].lower()
    # Label Studio shows its user the status line only (as HTML): the reason is there, tags without brackets.
    line = client.post("/setup", orjson.dumps(body), content_type="application/json").reason_phrase
    assert "found controls: RectangleLabels" in line and "objects: Image" in line and "<" not in line, line
    assert line.isascii() and "\n" not in line and len(line) <= 400


def test_setup_with_two_choices_on_text_is_refused_naming_both(client):
    body = copy.deepcopy(recorded("setup")["body"])
    body["schema"] = body["schema"].replace("</View>", '<Choices name="topic" toName="text"><Choice value="a"/>'
                                                       '<Choice value="b"/></Choices></View>')
    status, answer = post(client, "/setup", orjson.dumps(body))
    assert status == 422
    assert "2 <Choices> label text (<Choices name='sentiment'>" in answer["detail"]
    assert "<Choices name='topic'>" in answer["detail"] and "keep one <Choices> per project" in answer["detail"]


@pytest.mark.parametrize("schema, words", [("<View><Text", "not valid XML"), ("", "schema"),
                                            ('<View><Text name="t" value="$t"/></View>', "control tag")])
def test_setup_with_a_broken_config(client, schema, words):
    body = copy.deepcopy(recorded("setup")["body"])
    body["schema"] = schema
    status, answer = post(client, "/setup", orjson.dumps(body))
    assert status in (400, 422) and words in answer["detail"]


@pytest.mark.parametrize("project", ["abc", "", None, "0.123", {"id": "x"}])
def test_setup_with_a_bad_project_key(client, project):
    body = copy.deepcopy(recorded("setup")["body"])
    body["project"] = project
    status, answer = post(client, "/setup", orjson.dumps(body))
    assert status == 400 and "project" in answer["detail"]


def test_setup_never_calls_the_hostname_it_is_given(client, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the service opened a network connection during /setup")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    body = copy.deepcopy(recorded("setup")["body"])
    body["hostname"] = "http://169.254.169.254"
    status, answer = post(client, "/setup", orjson.dumps(body))
    assert status == 200 and answer["model_version"]


def test_extra_params_choose_the_strategy_and_unknown_ones_are_refused(client):
    from orchestrator.learning.models import Project

    body = copy.deepcopy(recorded("setup")["body"])
    body["extra_params"] = '{"strategy": "entropy"}'  # not the default (margin)
    status, _ = post(client, "/setup", orjson.dumps(body))
    assert status == 200 and Project.objects.get(ls_project_id=1).strategy == "entropy"
    body["extra_params"] = {"strategy": "telepathy"}
    status, answer = post(client, "/setup", orjson.dumps(body))
    assert status == 400 and "telepathy" in answer["detail"] and "least_confidence" in answer["detail"]


def test_a_new_project_gets_the_default_features_and_extra_params_choose_others(client, settings):
    from orchestrator.learning.models import Project

    body = copy.deepcopy(recorded("setup")["body"])
    assert post(client, "/setup", orjson.dumps(body))[0] == 200
    project = Project.objects.get(ls_project_id=1)
    assert (project.features, project.strategy) == ("tfidf+glove", "margin")  # what the README's table chose
    body["extra_params"] = {"features": "tfidf"}
    assert post(client, "/setup", orjson.dumps(body))[0] == 200
    assert Project.objects.get(ls_project_id=1).features == "tfidf"
    body["extra_params"] = {"features": "bert"}
    status, answer = post(client, "/setup", orjson.dumps(body))
    assert status == 400 and "bert" in answer["detail"] and "tfidf+glove" in answer["detail"]
    assert Project.objects.get(ls_project_id=1).features == "tfidf"  # a refused connection changes nothing


def test_wrong_method_is_405(client):
    response = client.get("/predict")
    assert response.status_code == 405 and "POST" in orjson.loads(response.content)["detail"]


def test_a_slow_ack_is_logged_with_where_its_time_went(client, settings, caplog):
    response, body = replay(client, "webhook-annotation_created")
    assert response.status_code == 201
    assert not [r for r in caplog.records if "webhook_slow" in r.getMessage()]  # a quick ack says nothing
    settings.ALO_SLOW_ACK_MS = 0
    response, body = replay(client, "webhook-annotation_created")
    (line,) = [r.getMessage() for r in caplog.records if "webhook_slow" in r.getMessage()]
    assert f"event={body['event']} action=ANNOTATION_CREATED" in line
    assert "record_ms=" in line and "schedule_ms=" in line


def test_webhook_without_action_is_400(client):
    status, answer = post(client, "/webhook", b'{"project": {"id": 1}}')
    assert status == 400 and "action" in answer["detail"]


def test_the_suite_runs_on_the_database_it_was_asked_for():
    import os

    from django.db import connection

    wanted = os.environ.get("ALO_TEST_DATABASE", "sqlite")
    assert connection.vendor == wanted
    from orchestrator.learning.models import Project

    assert Project.objects.count() == 0  # a real query on that database


def test_a_batch_of_thousands_is_answered_in_order(client, trained_sms_project):
    project, version = trained_sms_project
    texts = [text for _, text in sms_rows()] * 5  # 3,000 tasks
    tasks = [{"id": i + 1, "data": {"text": t}, "project": project.ls_project_id} for i, t in enumerate(texts)]
    response = client.post("/predict", data=orjson.dumps({"tasks": tasks, "project": project.ls_project_key,
                                                          "label_config": SMS_CONFIG}),
                           content_type="application/json")
    results = orjson.loads(response.content)["results"]
    assert response.status_code == 200 and len(results) == len(tasks)
    # Same text, same answer: the order of answers follows the order of tasks.
    first = [r["result"][0]["value"]["choices"] for r in results[:600]]
    assert all(first[i % 600] == r["result"][0]["value"]["choices"] for i, r in enumerate(results))
    assert {r["model_version"] for r in results} == {version.version}


def test_a_changed_label_config_serves_cold_start_until_retrained(client, trained_sms_project):
    project, version = trained_sms_project
    changed = SMS_CONFIG.replace('<Choice value="spam"/>', '<Choice value="spam"/><Choice value="promo"/>')
    response = client.post("/setup", data=orjson.dumps({"project": project.ls_project_key, "schema": changed}),
                           content_type="application/json")
    assert orjson.loads(response.content)["model_version"] == "cold-start"
    answer = client.post("/predict", data=orjson.dumps({"tasks": [{"id": 1, "data": {"text": "hello"}}],
                                                        "project": project.ls_project_key, "label_config": changed}),
                         content_type="application/json")
    (result,) = orjson.loads(answer.content)["results"]
    assert result["model_version"] == "cold-start" and result["result"] == []


def test_setup_and_versions_never_wait_for_a_model_load(client, trained_sms_project, monkeypatch):
    """A cold web process must answer /setup (3 s timeout) while the model loads; /predict waits for it."""
    import threading

    from orchestrator.gateways import mlflow_store
    from orchestrator.learning.model_cache import model_cache

    project, version = trained_sms_project
    real_load = mlflow_store.load_pipeline
    release, loads = threading.Event(), []

    def blocked_load(uri):
        loads.append(uri)
        assert release.wait(30), "the test never released the load"
        return real_load(uri)

    monkeypatch.setattr(mlflow_store, "load_pipeline", blocked_load)
    model_cache.clear()  # as in a web process that did not train the model

    setup = client.post("/setup", data=orjson.dumps({"project": project.ls_project_key, "schema": SMS_CONFIG}),
                        content_type="application/json")
    assert orjson.loads(setup.content)["model_version"] == version.version
    versions = orjson.loads(client.get("/versions").content)
    assert versions["current_versions"] == [version.version]
    assert not release.is_set() and loads == [version.model_uri]  # answered while the load was still blocked

    release.set()
    answer = client.post("/predict", data=orjson.dumps({"tasks": [{"id": 1, "data": {"text": "WIN a free prize now"}}],
                                                        "project": project.ls_project_key, "label_config": SMS_CONFIG}),
                         content_type="application/json")
    (result,) = orjson.loads(answer.content)["results"]
    assert result["model_version"] == version.version and result["result"]
    assert loads == [version.model_uri]  # one load, shared by the background warm-up and /predict


def test_a_model_that_cannot_load_serves_cold_start_and_is_retried_later(client, trained_sms_project, monkeypatch):
    from orchestrator.gateways import mlflow_store
    from orchestrator.learning import model_cache as model_cache_module
    from orchestrator.learning.model_cache import model_cache

    project, version = trained_sms_project
    real_load = mlflow_store.load_pipeline
    attempts = []

    def broken(uri):
        attempts.append(uri)
        raise OSError("artifact store unreachable")

    monkeypatch.setattr(mlflow_store, "load_pipeline", broken)
    model_cache.clear()
    monkeypatch.setattr(model_cache_module, "LOAD_RETRY_SECONDS", 3600.0)
    body = orjson.dumps({"tasks": [{"id": 1, "data": {"text": "hello"}}], "project": project.ls_project_key,
                         "label_config": SMS_CONFIG})
    first = orjson.loads(client.post("/predict", data=body, content_type="application/json").content)["results"][0]
    assert first["model_version"] == "cold-start" and attempts == [version.model_uri]
    model_cache.forget(project.ls_project_id)
    client.post("/predict", data=body, content_type="application/json")
    assert len(attempts) == 1  # not retried on every request
    setup = client.post("/setup", data=orjson.dumps({"project": project.ls_project_key, "schema": SMS_CONFIG}),
                        content_type="application/json")
    assert orjson.loads(setup.content)["model_version"] == "cold-start"  # announces what it can serve

    # Once the retry window has passed, a load that works serves the version again.
    monkeypatch.setattr(mlflow_store, "load_pipeline", real_load)
    monkeypatch.setattr(model_cache_module, "LOAD_RETRY_SECONDS", 0.0)
    model_cache.forget(project.ls_project_id)
    again = orjson.loads(client.post("/predict", data=body, content_type="application/json").content)["results"][0]
    assert again["model_version"] == version.version


def test_extra_params_set_the_training_policy_once(client):
    from orchestrator.learning.models import TrainingPolicy

    extra = {"training": {"retrain_every": 50, "quiet_seconds": 5, "promotion": "if_not_worse"}}
    body = {"project": "4.1700000000", "schema": SMS_CONFIG, "extra_params": orjson.dumps(extra).decode()}
    assert client.post("/setup", data=orjson.dumps(body), content_type="application/json").status_code == 200
    policy = TrainingPolicy.objects.get(project__ls_project_id=4)
    assert (policy.retrain_every, policy.quiet_seconds, policy.promotion, policy.min_annotations) == (50, 5.0, "if_not_worse", 10)
    # An edit in the admin survives the /setup calls Label Studio repeats with the same extra params.
    TrainingPolicy.objects.filter(pk=policy.pk).update(retrain_every=7)
    client.post("/setup", data=orjson.dumps(body), content_type="application/json")
    assert TrainingPolicy.objects.get(pk=policy.pk).retrain_every == 7


@pytest.mark.parametrize("section, value, words", [
    ("training", {"retrain_evry": 5}, ["retrain_evry", "retrain_every"]),
    ("training", {"min_annotations": -1}, ["min_annotations", "between 0 and 1,000,000"]),
    ("training", {"min_annotations": 2**63}, ["min_annotations", "between 0 and 1,000,000"]),
    ("training", {"quiet_seconds": 1e20}, ["quiet_seconds", "between 0 and 86,400", "1e+20"]),
    ("training", {"retrain_every": 10**30}, ["retrain_every", "between 0 and 1,000,000", "1e+30"]),
    ("training", {"max_macro_f1_drop": 2}, ["max_macro_f1_drop", "between 0 and 1"]),
    ("scoring", {"view_title": "q" * 101}, ["view_title", "at most 100 characters"]),
    ("training", {"min_annotations": 2.5}, ["min_annotations", "int"]),
    ("training", {"auto_train": "yes"}, ["auto_train", "bool"]),
    ("training", {"promotion": "sometimes"}, ["promotion", "if_not_worse"]),
    ("training", "often", ["training", "object"]),
    ("training", {"stop_kappa": 1.5}, ["stop_kappa", "between 0.5 and 1"]),
    ("training", {"stop_kappa": 0.1}, ["stop_kappa", "between 0.5 and 1"]),
    ("scoring", {"chunk_size": 0}, ["chunk_size", "between 1 and 5000"]),
    ("scoring", {"chunk_size": 20000}, ["chunk_size", "5000"]),
    ("scoring", {"auto_push": 1}, ["auto_push", "bool"]),
    ("scoring", {"view_title": 3}, ["view_title", "str"]),
    ("scoring", {"chunk": 500}, ["chunk", "chunk_size"]),
])
def test_extra_params_with_a_bad_policy_are_refused(client, section, value, words):
    from orchestrator.learning.models import Project

    body = {"project": "4.1700000000", "schema": SMS_CONFIG, "extra_params": {section: value}}
    response = client.post("/setup", data=json.dumps(body), content_type="application/json")  # ints past 64 bits
    assert response.status_code == 400
    detail = orjson.loads(response.content)["detail"]
    assert all(word in detail for word in words), detail
    assert not Project.objects.filter(ls_project_id=4).exists()


@pytest.mark.parametrize("text, stored", [
    ("9" * 5000 + ".1", {"text": "9" * 5000 + ".1"}),  # json.loads made this float('inf'): a 500 on SQLite
    ("NaN", {"text": "NaN"}),
    ("Infinity", {"text": "Infinity"}),
    ("[1e999]", {"text": "[1e999]"}),
    ("be gentle", {"text": "be gentle"}),
    ("12", {"value": 12}),
])
def test_extra_params_text_that_is_not_a_json_object_is_kept_as_written(client, text, stored):
    from orchestrator.learning.models import Project

    body = {"project": "4.1700000000", "schema": SMS_CONFIG, "extra_params": text}
    response = client.post("/setup", data=orjson.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    assert Project.objects.get(ls_project_id=4).extra_params == stored


@pytest.mark.parametrize("text", ['{"training": {"quiet_seconds": Infinity}}', '{"training": {"retrain_every": 5,}}',
                                  '{"strategy": NaN}', "  {strategy: margin}"])
def test_extra_params_meant_as_an_object_but_not_json_are_refused(client, text):
    from orchestrator.learning.models import Project

    body = {"project": "4.1700000000", "schema": SMS_CONFIG, "extra_params": text}
    response = client.post("/setup", data=orjson.dumps(body), content_type="application/json")
    assert response.status_code == 400
    detail = orjson.loads(response.content)["detail"]
    assert "extra params are not valid JSON" in detail and '{"training": {"retrain_every": 50}}' in detail, detail
    assert not Project.objects.filter(ls_project_id=4).exists()


def test_extra_params_set_the_scoring_policy(client):
    from orchestrator.learning.models import ScoringPolicy

    extra = {"scoring": {"chunk_size": 500, "view_title": "Next up", "uncertainty_sampling": False}}
    body = {"project": "4.1700000000", "schema": SMS_CONFIG, "extra_params": extra}
    assert client.post("/setup", data=orjson.dumps(body), content_type="application/json").status_code == 200
    policy = ScoringPolicy.objects.get(project__ls_project_id=4)
    assert (policy.chunk_size, policy.view_title, policy.uncertainty_sampling, policy.auto_push) == (
        500, "Next up", False, True)


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least_confidence", "random", "ranked_batch",
                                      "vote_entropy", "consensus_entropy"])
def test_predict_on_texts_without_one_known_word_answers_every_task(client, strategy):
    """Empty text, emoji, digits, another script, alone in a batch: a prediction each, never a 500."""
    from orchestrator.learning.models import Project

    replay(client, "setup")
    Project.objects.filter(ls_project_id=1).update(strategy=strategy)
    train_sentiment()
    replay(client, "setup")
    body = copy.deepcopy(recorded("predict-retrieve-predictions")["body"])
    texts = ["", "😀🎉", "4815162342", "日本語のテキスト", "   "]
    body["tasks"] = [{**body["tasks"][0], "id": 900 + i, "data": {"text": text}} for i, text in enumerate(texts)]
    for tasks in (body["tasks"], body["tasks"][:1]):
        status, answer = post(client, "/predict", orjson.dumps({**body, "tasks": tasks}))
        assert status == 200, answer
        assert len(answer["results"]) == len(tasks)
        for prediction in answer["results"]:
            assert 0.0 <= prediction["score"] <= 1.0
            (region,) = prediction["result"]
            assert region["value"]["choices"][0] in {"Positive", "Negative"}


@pytest.mark.parametrize("action", ["TRAIN_FORCED", "RECONCILE"])
def test_a_webhook_cannot_send_the_services_own_events(client, action):
    from orchestrator.learning.models import WebhookEvent

    replay(client, "setup")
    body = {**recorded("webhook-start_training")["body"], "action": action}
    status, answer = post(client, "/webhook", orjson.dumps(body))
    assert status == 400 and action in answer["detail"] and "the service's own" in answer["detail"]
    assert not WebhookEvent.objects.exists()


def test_texts_behind_urls_are_fetched_at_once_and_label_studios_errors_are_not_echoed(client, settings,
                                                                                       label_studio_files):
    reads = label_studio_files
    tasks = [{"id": i, "data": {"url": f"/data/upload/1/{i}.txt"}} for i in range(1, 41)]
    body = {"project": "9.1717171717", "label_config": URL_CONFIG, "tasks": tasks}
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 200 and len(answer["results"]) == 40
    assert 1 < reads["at_once"] <= 8  # concurrent, and bounded
    settings.URL_FETCH_THREADS, reads["at_once"] = 2, 0  # ALO_URL_FETCH_THREADS
    body["tasks"] = [{"id": i, "data": {"url": f"/data/upload/2/{i}.txt"}} for i in range(1, 41)]
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 200 and len(answer["results"]) == 40 and reads["at_once"] == 2
    body["tasks"] = tasks
    tasks[7]["data"]["url"] = "/data/upload/1/bad.txt"
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 502 and "task 8" in answer["detail"] and "500" in answer["detail"]
    assert "SECRET_KEY" not in answer["detail"] and "Traceback" not in answer["detail"]
    tasks[7]["data"]["url"] = "/api/users/"
    status, answer = post(client, "/predict", orjson.dumps(body))
    assert status == 400 and "not a task file" in answer["detail"]


@pytest.mark.parametrize("project", [1, "1", "1.1795364173", {"id": 1}, {"id": 1, "title": "x"}])
@pytest.mark.parametrize("with_annotation", [True, False])
def test_both_payload_shapes_label_studio_sends_are_recorded_for_the_project(client, project, with_annotation):
    from orchestrator.learning.models import Project, WebhookEvent

    replay(client, "setup")
    body = copy.deepcopy(recorded("webhook-annotation_created")["body"])
    body["project"] = project
    if not with_annotation:
        body.pop("annotation")
    status, answer = post(client, "/webhook", orjson.dumps(body))
    assert status == 201
    event = WebhookEvent.objects.get(pk=answer["event"])
    assert event.ls_project_id == 1 and event.project == Project.objects.get(ls_project_id=1)
    assert event.annotation_ids == ([body["annotation"]["id"]] if with_annotation else [])
