"""A schema-driven fuzz run (schemathesis) against the management API: no input makes a 5xx.

Loads the schema drf-spectacular serves, generates requests for every operation (valid and
invalid bodies, path and query values) and sends them to the WSGI app in process, with a
staff token, over a project that has two trained versions.
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from orchestrator.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def fuzz_state(request, two_versions, staff_token, fake_ls, queued_runs):
    return staff_token


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_management_api_fail(case, fuzz_state):
    response = case.call(headers={"Authorization": f"Token {fuzz_state}"})
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])
