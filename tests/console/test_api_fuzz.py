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


def stored():
    """What a refused request must leave as it was."""
    from django_celery_beat.models import PeriodicTask

    from orchestrator.learning.models import ModelVersion, Project, ScoringPolicy, ScoringRun, TrainingPolicy, WebhookEvent

    return (list(Project.objects.order_by("pk").values("strategy", "strategy_params", "features", "serving_version")),
            list(ModelVersion.objects.order_by("pk").values_list("status", flat=True)),
            list(TrainingPolicy.objects.order_by("pk").values()), list(ScoringPolicy.objects.order_by("pk").values()),
            list(ScoringRun.objects.order_by("pk").values_list("status", flat=True)), WebhookEvent.objects.count(),
            list(PeriodicTask.objects.order_by("pk").values("name", "enabled", "crontab_id", "interval_id")))


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_management_api_fail(case, fuzz_state):
    before = stored()
    response = case.call(headers={"Authorization": f"Token {fuzz_state}"})
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])
    if response.status_code >= 400:
        assert stored() == before, (case.method, case.formatted_path, case.body, response.status_code)
