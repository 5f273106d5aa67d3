"""The Django admin: every page renders, and its action asks for a push."""
from __future__ import annotations

from orchestrator.learning.models import ScoringRun
from orchestrator.learning.scoring import job


def test_the_admin_action_queues_a_push_and_every_admin_page_renders(trained_sms_project, fake_ls, queued_runs,
                                                                      admin_client):
    from django.urls import reverse

    project, version = trained_sms_project
    changelist = reverse("admin:learning_project_changelist")
    response = admin_client.post(changelist, {"action": "score_and_push", "_selected_action": [project.pk]},
                                 follow=True)
    assert response.status_code == 200
    run = ScoringRun.objects.get(project=project)
    assert (run.trigger, run.status, run.tag) == ("admin", ScoringRun.Status.QUEUED, version.version)
    assert queued_runs == [run.pk] and f"scoring run {run.pk} (queued, {version.version})" in response.content.decode()
    job.run_scoring(run.pk)
    for name, pk in [("project", project.pk), ("scoringrun", run.pk), ("modelversion", version.pk)]:
        assert admin_client.get(reverse(f"admin:learning_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:learning_{name}_change", args=[pk])).status_code == 200
    for name in ("trainingrun", "webhookevent"):
        assert admin_client.get(reverse(f"admin:learning_{name}_changelist")).status_code == 200


def test_the_admin_action_says_when_no_model_serves_and_pushes_the_cold_start(sms_project, fake_ls, queued_runs,
                                                                             admin_client):
    from django.urls import reverse

    response = admin_client.post(reverse("admin:learning_project_changelist"),
                                 {"action": "score_and_push", "_selected_action": [sms_project.pk]}, follow=True)
    run = ScoringRun.objects.get(project=sms_project)
    assert run.cold_start and queued_runs == [run.pk]
    assert "no trained version serves yet: the cold start&#x27;s order" in response.content.decode()
