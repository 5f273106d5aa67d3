"""Fuzzing the ML backend protocol: every request Label Studio sends, mutated, never gets a 5xx.

Each example takes one recorded request (/setup, /predict, /webhook, /train, /versions),
replaces a few of its values, anywhere in the body, with hostile ones (ids past 2^63, numbers
of thousands of digits, floats like 1e300, lists where strings belong, deep nesting, long
strings, emoji) and sends it in process. Every answer must be below 500, the service stays
healthy, and a refused request stores nothing.
"""
from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import recorded

pytestmark = pytest.mark.django_db

REQUESTS = ["setup", "predict-task-open", "predict-retrieve-predictions", "predict-interactive",
            "webhook-annotation_created", "webhook-annotation_updated", "webhook-annotations_deleted",
            "webhook-start_training", "webhook-project_updated"]
# JSON numbers no Python JSON encoder writes for us: they go in as text.
RAW_NUMBERS = ["9" * 5000, "1" + "0" * 4400, "9223372036854775808", "18446744073709551616", "-9223372036854775809",
               "1e400", "-1e400", "1e-400", "123456789012345678901234567890.5"]
HOSTILE = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e20, 1e300, -1e300, 0.5, 5e-324]),
    st.text(max_size=40),
    st.sampled_from(["", " ", "😀" * 50, "x" * 20000, "<View>", "1.2.3", "s3://bucket/key", "gs://b/k",
                     "azure-blob://c/k", "/data/upload/1/x.txt", "http://127.0.0.1:1/", "../../etc/passwd",
                     "0." + "9" * 5000, "9" * 5000 + ".1"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["RAW:" + n for n in RAW_NUMBERS]),
    st.recursive(st.integers(), lambda inner: st.lists(inner, max_size=1), max_leaves=60),
)


def paths(value, prefix=()):
    """Every place in a JSON value (the root excluded) that a mutation can replace."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            yield prefix + (index,)
            yield from paths(item, prefix + (index,))


def replace(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replace(value[path[0]], path[1:], new)
    return copy


def encode(body) -> bytes:
    text = json.dumps(body)
    return re.sub(r'"RAW:([^"]*)"', r"\1", text).encode()


def stored():
    from orchestrator.learning.models import Project, ScoringPolicy, TrainingPolicy, WebhookEvent

    return (WebhookEvent.objects.count(),
            list(Project.objects.values_list("ls_project_id", "label_config", "strategy", "strategy_params",
                                             "features", "extra_params")),
            list(TrainingPolicy.objects.values()), list(ScoringPolicy.objects.values()))


LEGACY_TRAIN = {"method": "POST", "path": "/train", "body": {
    "project": "1.1795364173", "label_config": recorded("setup")["body"]["schema"],
    "annotations": [{"id": 20, "data": {"text": "great"}, "annotations": [{"id": 5, "result": [
        {"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": ["Positive"]}}]}]}]}}


class AuthenticatedClient:
    """The test client, sending the basic-auth pair on every request."""

    def __init__(self, client, header):
        self.client, self.header = client, header

    def generic(self, *args, **kwargs):
        return self.client.generic(*args, HTTP_AUTHORIZATION=self.header, **kwargs)

    def get(self, *args, **kwargs):
        return self.client.get(*args, HTTP_AUTHORIZATION=self.header, **kwargs)


@pytest.fixture(params=["open", "basic auth"])
def known_project(request, client, settings):
    """Label Studio's project 1, set up as it was recorded (so mutations hit a known project too);
    the service open, or behind basic auth with the right pair sent."""
    if request.param == "basic auth":
        import base64

        settings.BASIC_AUTH_USER, settings.BASIC_AUTH_PASS = "ls", "pw"
        client = AuthenticatedClient(client, "Basic " + base64.b64encode(b"ls:pw").decode())
    setup = recorded("setup")
    response = client.generic("POST", "/setup", json.dumps(setup["body"]), content_type="application/json")
    assert response.status_code == 200
    return client


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_mutated_request_makes_the_protocol_fail(known_project, data):
    client = known_project
    name = data.draw(st.sampled_from(REQUESTS + ["train"]), label="request")
    request = LEGACY_TRAIN if name == "train" else recorded(name)
    body = request["body"]
    places = list(paths(body))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(places), label="path")
        body = replace(body, path, data.draw(HOSTILE, label="value"))
        places = list(paths(body)) or places
    before = stored()
    response = client.generic("POST", request["path"], encode(body), content_type="application/json")
    assert response.status_code < 500, (request["path"], response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/json"
    if response.status_code >= 400:
        assert json.loads(response.content)["detail"]
        assert stored() == before, f"a refused {request['path']} stored something"
    assert client.get("/health").status_code == 200


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(project=st.one_of(HOSTILE.map(lambda v: v if isinstance(v, str) else json.dumps(v)), st.text(max_size=30)))
def test_no_project_value_makes_versions_fail(known_project, project):
    response = known_project.get("/versions", {"project": project.replace("\x00", "")})
    assert response.status_code < 500, (project[:100], response.status_code, response.content[:500])


HOSTILE_KEYS = ["9223372036854775808", "2147483648", "9" * 5000, "9" * 5000 + ".1717171717", "1." + "9" * 5000,
                "RAW:9223372036854775808", "RAW:1" + "0" * 30, "RAW:-1", "RAW:1e300", "0.1717171717", " ", "1.2.3"]
KEY_IDS = [k if len(k) < 25 else f"{k[:8]}...({len(k)} chars)" for k in HOSTILE_KEYS]


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=KEY_IDS)
@pytest.mark.parametrize("name", ["setup", "predict-task-open", "webhook-annotation_created", "webhook-start_training"])
def test_project_ids_no_database_can_hold_are_a_400_naming_the_project(known_project, name, key):
    request = recorded(name)
    body = dict(request["body"])
    if name.startswith("webhook"):
        body["project"] = {**body["project"], "id": key}
    else:
        body["project"] = key
    before = stored()
    response = known_project.generic("POST", request["path"], encode(body), content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "project" in json.loads(response.content)["detail"]
    assert stored() == before


@pytest.mark.parametrize("key", [k for k in HOSTILE_KEYS if not k.startswith("RAW:")],
                         ids=[i for k, i in zip(HOSTILE_KEYS, KEY_IDS) if not k.startswith("RAW:")])
def test_versions_of_a_project_id_no_database_can_hold_is_a_400(known_project, key):
    response = known_project.get("/versions", {"project": key})
    assert response.status_code == 400 and "project" in json.loads(response.content)["detail"]
