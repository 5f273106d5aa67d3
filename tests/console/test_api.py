"""The management API: permissions, each operation, errors as JSON naming the problem, the schema."""
from __future__ import annotations

import orjson
import pytest

from orchestrator.learning.models import ModelVersion, Project, ScoringRun


def body(response):
    return orjson.loads(response.content)


@pytest.mark.parametrize("path", ["/api/projects/", "/api/versions/", "/api/scoring-runs/", "/api/strategies/"])
def test_anonymous_is_401_and_non_staff_is_403(client, django_user_model, path):
    from rest_framework.authtoken.models import Token

    anonymous = client.get(path)
    assert anonymous.status_code == 401 and "credentials were not provided" in body(anonymous)["detail"]
    assert anonymous["WWW-Authenticate"] == "Token"
    annotator = django_user_model.objects.create_user("annotator", password="pw-annotator-1")
    token = Token.objects.create(user=annotator).key
    refused = client.get(path, HTTP_AUTHORIZATION=f"Token {token}")
    assert refused.status_code == 403 and "permission" in body(refused)["detail"]
    wrong = client.get(path, HTTP_AUTHORIZATION="Token not-a-token")
    assert wrong.status_code == 401 and body(wrong)["detail"] == "Invalid token."


def test_projects_versions_and_the_learning_curve(api, two_versions):
    project, first, second = two_versions
    listed = body(api.get("/api/projects/"))
    assert listed["count"] == 1 and listed["results"][0]["ls_project_id"] == project.ls_project_id
    detail = body(api.get(f"/api/projects/{project.ls_project_id}/"))
    assert detail["serving_version"] == second.version and detail["schedule"]["describe"] == "off"
    versions = body(api.get(f"/api/projects/{project.ls_project_id}/versions/"))["results"]
    assert [(v["version"], v["serving"]) for v in versions] == [(second.version, True), (first.version, False)]
    assert versions[0]["metrics"]["macro_f1"] > 0.5
    curve = body(api.get(f"/api/projects/{project.ls_project_id}/learning-curve/"))
    assert [p["annotations"] for p in curve] == [400, 300]
    missing = api.get("/api/projects/999/")
    assert missing.status_code == 404 and body(missing)["detail"]
    narrowed = api.get("/api/versions/", {"project": "x"})
    assert narrowed.status_code == 400 and body(narrowed)["field"] == "project"
    assert body(narrowed)["detail"].startswith("project: a Label Studio project id")


def test_promote_roll_back_and_retire_through_the_api(api, two_versions, fake_ls, queued_runs):
    project, first, second = two_versions
    rolled = api.post(f"/api/projects/{project.ls_project_id}/roll-back/")
    assert rolled.status_code == 200 and body(rolled)["serving_version"] == first.version
    run = ScoringRun.objects.get(pk=body(rolled)["scoring_run"])
    assert run.model_version == first and queued_runs[-1] == run.pk
    again = api.post(f"/api/projects/{project.ls_project_id}/roll-back/")
    assert again.status_code == 409 and "no version served before" in body(again)["detail"]
    promoted = api.post(f"/api/versions/{second.pk}/promote/")
    assert promoted.status_code == 200 and body(promoted)["serving_version"] == second.version
    serving = api.post(f"/api/versions/{second.pk}/retire/")
    assert serving.status_code == 409 and "promote another version or roll back first" in body(serving)["detail"]
    retired = api.post(f"/api/versions/{first.pk}/retire/")
    assert retired.status_code == 200 and ModelVersion.objects.get(pk=first.pk).status == ModelVersion.Status.RETIRED
    assert api.get(f"/api/versions/{first.pk}/promote/").status_code == 405


def test_strategy_and_schedule_through_the_api(api, trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project
    url = f"/api/projects/{project.ls_project_id}"
    bad = api.put(f"{url}/strategy/", {"strategy": "ranked_batch", "strategy_params": {"candidates": 0}},
                  content_type="application/json")
    assert bad.status_code == 400 and body(bad)["field"] == "strategy_params"
    assert "candidates must be a positive integer" in body(bad)["detail"]
    unknown = api.put(f"{url}/strategy/", {"strategy": "foo"}, content_type="application/json")
    assert unknown.status_code == 400 and "known: consensus_entropy" in body(unknown)["detail"]
    # One name in and out (GET /api/projects/{id}/ says strategy_params); an unknown field is refused, named.
    renamed = api.put(f"{url}/strategy/", {"strategy": "ranked_batch", "params": {"candidates": 50}},
                      content_type="application/json")
    assert renamed.status_code == 400 and body(renamed)["field"] == "params"
    assert body(renamed)["detail"] == ("params: unknown field params; this endpoint takes rescore, strategy, "
                                       "strategy_params")
    assert Project.objects.get(pk=project.pk).strategy != "ranked_batch"
    typo = api.put(f"{url}/schedule/", {"kind": "hours", "every_hour": 6, "cron": "x"}, content_type="application/json")
    assert typo.status_code == 400 and body(typo)["detail"].startswith("cron: unknown fields cron, every_hour;")
    changed = api.put(f"{url}/strategy/", {"strategy": "entropy"}, content_type="application/json")
    assert changed.status_code == 200 and ScoringRun.objects.get(pk=body(changed)["scoring_run"]).strategy == "entropy"

    crontab = api.put(f"{url}/schedule/", {"kind": "crontab", "crontab": "0 2 * * *"}, content_type="application/json")
    assert crontab.status_code == 200 and body(crontab)["describe"] == "crontab 0 2 * * * (UTC)"
    assert body(api.get(f"{url}/schedule/"))["kind"] == "crontab"
    wrong = api.put(f"{url}/schedule/", {"kind": "hours", "every_hours": -1}, content_type="application/json")
    assert wrong.status_code == 400 and body(wrong)["field"] == "every_hours" and "between 1/60" in body(wrong)["detail"]
    assert api.put(f"{url}/schedule/", {"kind": "weekly"}, content_type="application/json").status_code == 400
    assert api.put(f"{url}/schedule/", b"{not json", content_type="application/json").status_code == 400


def test_train_score_cancel_and_retry_through_the_api(api, trained_sms_project, fake_ls, queued_runs, jobs_sent):
    from orchestrator import jobs
    from orchestrator.learning.models import WebhookEvent

    project, version = trained_sms_project
    url = f"/api/projects/{project.ls_project_id}"
    trained = api.post(f"{url}/train/")
    assert trained.status_code == 202
    assert WebhookEvent.objects.get(pk=body(trained)["event"]).action == "TRAIN_API"  # its runs' trigger: api
    assert any(job.task == jobs.CHECK_TRAINING for job in jobs_sent)
    again = api.post(f"{url}/train/", {"even_if_unchanged": True}, content_type="application/json")
    assert again.status_code == 202 and WebhookEvent.objects.get(pk=body(again)["event"]).action == "TRAIN_API_FORCED"
    wrong = api.post(f"{url}/train/", {"even_if_unchanged": "perhaps"}, content_type="application/json")
    assert wrong.status_code == 400 and body(wrong)["field"] == "even_if_unchanged"
    scored = api.post(f"{url}/score/")
    assert scored.status_code == 202
    run_id = body(scored)["scoring_run"]
    cancelled = api.post(f"/api/scoring-runs/{run_id}/cancel/")
    assert cancelled.status_code == 200 and body(cancelled)["status"] == "cancelled"
    twice = api.post(f"/api/scoring-runs/{run_id}/cancel/")
    assert twice.status_code == 409 and "only a queued or running run can be cancelled" in body(twice)["detail"]
    retried = api.post(f"/api/scoring-runs/{run_id}/retry/")
    assert retried.status_code == 202 and body(retried)["status"] == "queued"
    runs = body(api.get("/api/scoring-runs/", {"project": project.ls_project_id}))
    assert runs["count"] >= 1 and all(r["project"] == project.ls_project_id for r in runs["results"])


def test_a_running_training_is_cancelled_through_the_api_and_a_finished_one_is_a_409(api, trained_sms_project):
    from orchestrator.learning.models import TrainingRun

    project, _ = trained_sms_project
    running = TrainingRun.objects.create(project=project, trigger="start_training")
    cancelled = api.post(f"/api/training-runs/{running.pk}/cancel/")
    assert cancelled.status_code == 200 and body(cancelled)["cancel_requested_by"] == "lead"
    assert body(cancelled)["status"] == "running"  # the worker stops it before its next phase
    TrainingRun.objects.filter(pk=running.pk).update(status=TrainingRun.Status.SUCCEEDED)
    over = api.post(f"/api/training-runs/{running.pk}/cancel/")
    assert over.status_code == 409 and "only a running training can be cancelled" in body(over)["detail"]
    assert api.post("/api/training-runs/123456789/cancel/").status_code == 404


def test_the_schema_validates_and_its_pages_render(api):
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)  # raises on an invalid OpenAPI document
    assert "/api/projects/{ls_project_id}/roll-back/" in schema["paths"]
    # Every value a run's trigger takes is listed, each with what it means.
    from orchestrator.learning.triggers import SCORING_TRIGGER_MEANINGS, TRAINING_TRIGGER_MEANINGS

    for name, meanings in (("TrainingRun", TRAINING_TRIGGER_MEANINGS), ("ScoringRun", SCORING_TRIGGER_MEANINGS)):
        trigger = schema["components"]["schemas"][name]["properties"]["trigger"]
        enum = schema["components"]["schemas"][trigger["allOf"][0]["$ref"].rsplit("/", 1)[1]] if "allOf" in trigger \
            else trigger
        assert enum["enum"] == [value for value, _ in meanings], (name, enum)
        assert "api: POST /api/projects/{id}/train/" in str(trigger) + str(enum) or name == "ScoringRun"
    assert api.get("/api/schema/").status_code == 200
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


def test_a_read_only_account_reads_everything_and_every_act_is_a_403_naming_the_permission(
        client, two_versions, fake_ls, queued_runs):
    from tests.console.conftest import READER, staff_user, token_of

    project, first, second = two_versions
    reader = {"HTTP_AUTHORIZATION": f"Token {token_of(staff_user('watcher', READER))}"}
    pid = project.ls_project_id
    for path in ("/api/projects/", f"/api/projects/{pid}/", f"/api/projects/{pid}/versions/",
                 f"/api/projects/{pid}/learning-curve/", f"/api/projects/{pid}/schedule/", "/api/versions/",
                 "/api/scoring-runs/", "/api/training-runs/", "/api/strategies/", "/api/schema/"):
        assert client.get(path, **reader).status_code == 200, path
    acts = [("post", f"/api/projects/{pid}/roll-back/", None), ("post", f"/api/projects/{pid}/train/", {}),
            ("post", f"/api/projects/{pid}/score/", None), ("put", f"/api/projects/{pid}/strategy/",
                                                            {"strategy": "entropy"}),
            ("put", f"/api/projects/{pid}/schedule/", {"kind": "hours", "every_hours": 6}),
            ("post", f"/api/versions/{first.pk}/promote/", None), ("post", f"/api/versions/{first.pk}/retire/", None)]
    for method, path, data in acts:
        response = getattr(client, method)(path, data=orjson.dumps(data) if data is not None else None,
                                           content_type="application/json", **reader)
        assert response.status_code == 403, path
        detail = body(response)["detail"]
        assert "learning.change_project" in detail and "may read but not act" in detail
    project.refresh_from_db()
    assert project.serving_version == second and project.strategy != "entropy"
    assert ModelVersion.objects.get(pk=first.pk).status == ModelVersion.Status.READY
    assert not ScoringRun.objects.filter(project=project).exists() and queued_runs == []


def test_a_staff_account_reads_only_the_records_it_has_a_view_permission_for(client, two_versions):
    from tests.console.conftest import staff_user, token_of

    project, _, _ = two_versions
    projects_only = {"HTTP_AUTHORIZATION": f"Token {token_of(staff_user('projects', ('view_project',)))}"}
    assert body(client.get("/api/projects/", **projects_only))["count"] == 1
    for path in (f"/api/projects/{project.ls_project_id}/versions/", "/api/versions/"):
        refused = client.get(path, **projects_only)
        assert refused.status_code == 403 and "learning.view_modelversion" in body(refused)["detail"], path
    refused = client.get("/api/training-runs/", **projects_only)
    assert refused.status_code == 403 and "learning.view_trainingrun" in body(refused)["detail"]
    bare = {"HTTP_AUTHORIZATION": f"Token {token_of(staff_user('bare'))}"}
    refused = client.get("/api/projects/", **bare)
    assert refused.status_code == 403 and "learning.view_project" in body(refused)["detail"]
    assert client.get("/api/strategies/", **bare).status_code == 200  # the registry, no project's records
    from tests.console.conftest import OPERATOR

    inactive = staff_user("left", OPERATOR)
    inactive.is_active = False
    inactive.save()
    gone = client.get("/api/projects/", HTTP_AUTHORIZATION=f"Token {token_of(inactive)}")
    assert gone.status_code == 401  # DRF refuses a deactivated account's token itself
