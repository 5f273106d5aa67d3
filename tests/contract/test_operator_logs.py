"""What an operator sees of the protocol: one access line per request, and the reason of a refused /setup."""
from __future__ import annotations

import logging

import orjson
import pytest

from tests.conftest import SMS_CONFIG

pytestmark = pytest.mark.django_db


def setup_body(**extra) -> bytes:
    return orjson.dumps({"project": "12.1717171717", "schema": SMS_CONFIG, "hostname": "http://127.0.0.1:8080",
                         "access_token": "secret-token-value", **extra})


def test_a_refused_setup_is_logged_with_its_reason_and_kept_on_the_project_until_one_is_accepted(client, caplog):
    from orchestrator.learning.models import Project

    assert client.post("/setup", setup_body(), content_type="application/json").status_code == 200
    with caplog.at_level(logging.INFO):
        refused = client.post("/setup", setup_body(extra_params='{"strategy": "foo"}'),
                              content_type="application/json")
    assert refused.status_code == 400
    reason = orjson.loads(refused.content)["detail"]
    assert "strategy 'foo', which does not exist; known: consensus_entropy" in reason
    warning = [r for r in caplog.records if r.getMessage().startswith("setup_refused")]
    assert len(warning) == 1 and warning[0].levelno == logging.WARNING
    assert "project=12.1717171717 known=True" in warning[0].getMessage() and reason in warning[0].getMessage()
    project = Project.objects.get(ls_project_id=12)
    assert project.last_setup_error == reason and project.last_setup_error_at is not None
    assert project.strategy == "margin"  # nothing of the refused call was applied

    assert client.post("/setup", setup_body(), content_type="application/json").status_code == 200
    project.refresh_from_db()
    assert project.last_setup_error == ""


def test_each_protocol_request_is_one_access_line_without_secrets(client, caplog, settings):
    settings.BASIC_AUTH_USER, settings.BASIC_AUTH_PASS = "ls", "pw-never-logged"
    import base64

    auth = "Basic " + base64.b64encode(b"ls:pw-never-logged").decode()
    with caplog.at_level(logging.INFO, logger="orchestrator.access"):
        client.post("/setup", setup_body(), content_type="application/json", HTTP_AUTHORIZATION=auth)
        client.post("/predict", orjson.dumps({"project": "12.1717171717", "label_config": SMS_CONFIG,
                                              "tasks": [{"id": 1, "data": {"text": "free prize now"}}]}),
                    content_type="application/json", HTTP_AUTHORIZATION=auth)
        client.get("/health")  # without the pair: refused, and still one line
        client.get("/predict", HTTP_AUTHORIZATION=auth)
        client.get("/admin/login/")
    lines = [r.getMessage() for r in caplog.records if r.name == "orchestrator.access"]
    assert len(lines) == 4, lines  # the admin is not a protocol path
    assert lines[0].startswith("POST /setup status=200 ms=") and lines[0].endswith("project=12 version=cold-start")
    assert lines[1].startswith("POST /predict status=200 ms=") and lines[1].endswith("project=12 version=cold-start")
    assert lines[2].startswith("GET /health status=401") and lines[2].endswith("project=- version=-")
    assert lines[3].startswith("GET /predict status=405")
    joined = "\n".join(r.getMessage() for r in caplog.records)
    assert "pw-never-logged" not in joined and "secret-token-value" not in joined


def test_without_a_label_studio_to_call_connect_start_and_training_say_what_the_user_loses(client, caplog, settings):
    """The service answers /setup and /predict without LABEL_STUDIO_URL, but cannot train, push or clean
    up: each Connect says so at WARNING, gunicorn's master at start, and a training fails saying it."""
    from types import SimpleNamespace

    from orchestrator import gunicorn_conf
    from orchestrator.gateways.label_studio import NOT_CONFIGURED
    from orchestrator.learning.models import Project, TrainingRun
    from orchestrator.learning.training import loop

    settings.LABEL_STUDIO_URL, settings.LABEL_STUDIO_API_KEY = "", ""
    with caplog.at_level(logging.INFO):
        assert client.post("/setup", setup_body(), content_type="application/json").status_code == 200
    said = [r for r in caplog.records if r.getMessage().startswith("setup_without_label_studio")]
    assert len(said) == 1 and said[0].levelno == logging.WARNING and NOT_CONFIGURED in said[0].getMessage()
    assert "cannot read annotations (no training), push scores (no queue order" in NOT_CONFIGURED

    started = []
    gunicorn_conf.when_ready(SimpleNamespace(log=SimpleNamespace(warning=lambda *a: started.append(a[0] % a[1:]))))
    assert started == [NOT_CONFIGURED]

    caplog.clear()
    with caplog.at_level(logging.INFO):
        result = loop.train_now(Project.objects.get(ls_project_id=12), trigger="manual")
    assert result.run.status == TrainingRun.Status.FAILED and NOT_CONFIGURED in result.run.detail
    failed = [r for r in caplog.records if r.getMessage().startswith("training_failed")]
    assert len(failed) == 1 and failed[0].levelno == logging.WARNING, [r.getMessage() for r in caplog.records]

    settings.LABEL_STUDIO_URL, settings.LABEL_STUDIO_API_KEY = "http://127.0.0.1:8080", "token"
    started.clear()
    gunicorn_conf.when_ready(SimpleNamespace(log=SimpleNamespace(warning=lambda *a: started.append(a[0] % a[1:]))))
    assert started == []


def test_the_icon_browsers_ask_for_is_answered_without_a_warning(client, caplog):
    with caplog.at_level(logging.INFO):
        answer = client.get("/favicon.ico")
    assert answer.status_code == 204 and "max-age" in answer["Cache-Control"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
