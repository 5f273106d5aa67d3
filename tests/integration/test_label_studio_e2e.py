"""End to end with a real Label Studio 1.23.2: connect, retrieve predictions, open a task, interact.

Everything is driven through Label Studio's own API, as a user's clicks would.
"""
from __future__ import annotations

import re

import pytest

from tests.conftest import SMS_CONFIG, sms_rows
from tests.support.label_studio import LabelStudioAPIError
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration


def create_project(ls, rows):
    project = ls.api("POST", "/api/projects", json={"title": "SMS e2e", "label_config": SMS_CONFIG})
    ls.api("POST", f"/api/projects/{project['id']}/import", json=[{"text": text, "truth": label} for label, text in rows])
    tasks = ls.api("GET", "/api/tasks", params={"project": project["id"], "page_size": 1000})["tasks"]
    assert len(tasks) == len(rows)
    return project, sorted(tasks, key=lambda t: t["id"])


def annotate(ls, task, label):
    return ls.api("POST", f"/api/tasks/{task['id']}/annotations", json={
        "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        "was_cancelled": False,
    })


def log_in(page, ls) -> None:
    """Log a Chromium page into Label Studio's own UI as the test user."""
    page.goto(f"{ls.url}/user/login/")
    page.fill("input[name=email]", ls.username)
    page.fill("input[name=password]", ls.password)
    with page.expect_navigation(wait_until="load"):
        page.click("button[type=submit]")
    assert "/user/login" not in page.url, page.url


def predictions_of(ls, project_id, task_ids):
    found = ls.api("GET", "/api/predictions", params={"project": project_id})
    return [p for p in found if p["task"] in set(task_ids)]


def test_label_studio_uses_the_service_as_its_model(label_studio, service):
    ls = label_studio
    rows = sms_rows(120)
    project, tasks = create_project(ls, rows)
    pid = project["id"]

    # Connect: Label Studio calls /health and /setup and shows the backend as connected.
    backend = ls.api("POST", "/api/ml", json={"project": pid, "url": service.url, "title": "AL orchestrator",
                                              "is_interactive": True})
    backend = ls.api("GET", f"/api/ml/{backend['id']}")
    assert backend["state"] == "CO", backend
    assert backend["model_version"] == "cold-start"
    assert service.shell(f"from orchestrator.learning.models import Project; print(Project.objects.get(ls_project_id={pid}).label_config == {SMS_CONFIG!r})") == "True"

    # Cold start: "Retrieve predictions" stores a scored prediction per task, no pre-annotation.
    cold = [t["id"] for t in tasks[100:105]]
    ls.api("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": pid},
           json={"selectedItems": {"all": False, "included": cold}})
    stored = predictions_of(ls, pid, cold)
    assert sorted(p["task"] for p in stored) == cold
    assert all(p["model_version"] == "cold-start" and 0 <= p["score"] <= 1 for p in stored)

    # Annotate through Label Studio: it sends the webhooks to the service, which records them.
    for task, (label, _) in zip(tasks[:40], rows[:40]):
        annotate(ls, task, label)
    wait_for(lambda: int(service.shell(
        "from orchestrator.learning.models import WebhookEvent; "
        f"print(WebhookEvent.objects.filter(ls_project_id={pid}, action='ANNOTATION_CREATED').count())")) == 40,
        what="40 ANNOTATION_CREATED webhooks")

    # Train from Label Studio's annotations (read through label-studio-sdk) and serve it.
    out = service.manage("train_project", "--project", str(pid), "--from-label-studio")
    version = f"p{pid}-v1"
    assert out.startswith(f"{version} serving on 40 examples"), out
    wait_for(lambda: ls.api("GET", f"/api/ml/{backend['id']}")["model_version"] == version,
             what="Label Studio to see the new model version")

    # Data Manager "Retrieve predictions" on some tasks: one prediction each, our version and score.
    chosen = [t["id"] for t in tasks[40:60]]
    ls.api("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": pid},
           json={"selectedItems": {"all": False, "included": chosen}})
    stored = predictions_of(ls, pid, chosen)
    assert sorted(p["task"] for p in stored) == chosen
    truth = {t["id"]: t["data"]["truth"] for t in tasks}
    correct = 0
    for p in stored:
        assert p["model_version"] == version
        assert p["score"] is not None and 0.0 <= p["score"] <= 1.0
        (region,) = p["result"]
        assert region["from_name"] == "label" and region["type"] == "choices"
        correct += region["value"]["choices"] == [truth[p["task"]]]
    assert correct >= 14, f"only {correct}/20 predictions right"
    # Retrieving again adds nothing: Label Studio sees the same version and skips these tasks.
    ls.api("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": pid},
           json={"selectedItems": {"all": False, "included": chosen}})
    assert len(predictions_of(ls, pid, chosen)) == len(chosen)

    # Open a task without predictions the way the labeling UI does: Label Studio asks the model.
    opened = tasks[70]["id"]
    task = ls.api("GET", f"/api/tasks/{opened}", params={"project": pid})
    ours = [p for p in task["predictions"] if p["model_version"] == version]
    assert len(ours) == 1 and ours[0]["result"][0]["value"]["choices"][0] in {"ham", "spam"}

    # Interactive pre-annotation: one task with the annotator's context; Label Studio relays our answer.
    answer = ls.api("POST", f"/api/ml/{backend['id']}/interactive-annotating",
                    json={"task": tasks[80]["id"], "context": {"result": []}})
    assert "errors" not in answer, answer
    assert answer["data"]["model_version"] == version
    assert answer["data"]["result"][0]["value"]["choices"][0] in {"ham", "spam"}

    # Start Training reaches the service as a START_TRAINING webhook.
    ls.api("POST", f"/api/ml/{backend['id']}/train")
    wait_for(lambda: int(service.shell(
        "from orchestrator.learning.models import WebhookEvent; "
        f"print(WebhookEvent.objects.filter(ls_project_id={pid}, action='START_TRAINING').count())")) == 1,
        what="the START_TRAINING event")


def test_an_unsupported_label_config_is_refused_at_connect_with_the_reason(label_studio, service):
    ls = label_studio
    config = ('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
              '<Label value="car"/></RectangleLabels></View>')
    project = ls.api("POST", "/api/projects", json={"title": "boxes", "label_config": config})
    with pytest.raises(LabelStudioAPIError) as refused:
        ls.api("POST", "/api/ml", json={"project": project["id"], "url": service.url, "title": "AL"})
    assert refused.value.status == 400
    # Label Studio relays only the status line of /setup's answer: the service's carries the reason.
    said = str(refused.value.body)
    assert "422 Client Error" in said and "RectangleLabels" in said and "Choices" in said, said


def test_a_refused_connect_shows_its_reason_in_label_studios_own_page(label_studio, service, tmp_path):
    """Connect Model in Label Studio's settings, in Chromium: the refusal it shows names the tags the
    service cannot learn and what it learns (the status line of /setup's answer is all it shows)."""
    import os
    from pathlib import Path

    from playwright.sync_api import sync_playwright

    from tests.integration.test_admin_pages import CHROMIUM, CHROMIUM_ARGS

    ls = label_studio
    shots = Path(os.environ.get("ALO_TEST_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    config = ('<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
              '<Label value="car"/></RectangleLabels></View>')
    project = ls.api("POST", "/api/projects", json={"title": "boxes in the UI", "label_config": config})
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            log_in(page, ls)
            page.goto(f"{ls.url}/projects/{project['id']}/settings/ml")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(shots / "label-studio-model-settings.png"))
            page.get_by_text("Connect Model", exact=True).first.click()
            page.fill("input[name=title]", "AL")
            page.fill("input[name=url]", service.url)
            page.get_by_text("Validate and Save", exact=True).click()
            shown = page.get_by_text(re.compile("RectangleLabels")).first
            shown.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "label-studio-connect-refused.png"))
            said = shown.inner_text()
            assert "422 Client Error" in said and "found controls: RectangleLabels" in said and "Image" in said, said
        finally:
            browser.close()
