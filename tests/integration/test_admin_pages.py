"""The admin as a person sees it, in headless Chromium: the pages of projects, versions and runs.

Screenshots go to ALO_TEST_SCREENSHOTS when set (to look at them), else to the test's tmp folder.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.learning.models import ScoringRun
from tests.factories import scoring_run

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags, Chromium's own connections are refused by the
# machine's closed network, many at a time.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser_page(live_server, admin_user, tmp_path):
    """A logged-in admin's page in Chromium, and where its screenshots go.

    Request it after the fixtures that write the test's rows: code run while Playwright's
    loop is active gets a database connection of its own, which nothing would close.
    """
    from playwright.sync_api import sync_playwright

    shots = Path(os.environ.get("ALO_TEST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{live_server.url}/admin/login/")
            page.fill("#id_username", admin_user.username)
            page.fill("#id_password", "password")
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/admin/")
            yield page, live_server.url, shots
        finally:
            browser.close()


@pytest.fixture
def pushed_project(trained_sms_project):
    """The trained SMS project with one completed push of its version."""
    project, version = trained_sms_project
    run = scoring_run(project, version, tag=version.version, status=ScoringRun.Status.SUCCEEDED, total=2500,
                      done=2500)
    return project, version, run


def test_the_admin_names_the_serving_version_and_each_runs_push_tag(pushed_project, browser_page):
    page, url, shots = browser_page
    project, version, run = pushed_project

    page.goto(f"{url}/admin/learning/project/")
    headers = page.locator("#result_list thead th").all_inner_texts()
    assert "SERVING VERSION" in [h.strip().upper() for h in headers]
    assert page.locator("#result_list tbody tr .field-serving").first.inner_text().strip() == version.version
    page.screenshot(path=str(shots / "admin-projects.png"), full_page=True)

    page.goto(f"{url}/admin/learning/project/{project.pk}/change/")
    assert page.locator(".field-serving_version").inner_text().split("\n")[0].strip().lower() == "serving version:"
    assert f"{version.version} (serving)" in page.locator(".field-serving_version").inner_text()
    page.screenshot(path=str(shots / "admin-project.png"), full_page=True)

    page.goto(f"{url}/admin/learning/scoringrun/")
    headers = [h.strip().upper() for h in page.locator("#result_list thead th").all_inner_texts()]
    assert "PUSH TAG" in headers
    assert page.locator(f"#result_list tbody tr:has-text('{run.tag}')").count() == 1
    page.screenshot(path=str(shots / "admin-scoring-runs.png"), full_page=True)

    page.goto(f"{url}/admin/learning/modelversion/")
    assert page.locator("#result_list tbody tr").count() == 1
    page.screenshot(path=str(shots / "admin-versions.png"), full_page=True)


def test_a_refused_connection_is_on_the_projects_page_until_the_project_connects(pushed_project, browser_page):
    """A Label Studio project whose Connect was refused has no project row: the projects page says so, with the
    reason, and lists every refusal on its own page; once a /setup of it is accepted, it is gone."""
    import requests

    from tests.conftest import SMS_CONFIG, recorded

    page, url, shots = browser_page
    body = {**recorded("setup")["body"], "project": "41.1700000000", "schema": (
        '<View><Image name="img" value="$image"/><RectangleLabels name="box" toName="img">'
        '<Label value="car"/></RectangleLabels></View>')}
    for _ in range(2):
        assert requests.post(f"{url}/setup", json=body, timeout=30).status_code == 422
    page.goto(f"{url}/admin/learning/project/")
    said = page.locator("ul.messagelist li.warning").inner_text()
    assert "Label Studio project 41" in said and "found controls: <RectangleLabels" in said, said
    page.screenshot(path=str(shots / "admin-projects-refused.png"), full_page=True)
    page.click("text=all refused connections")
    row = page.locator("#result_list tbody tr").first
    assert "RectangleLabels" in row.inner_text() and row.locator(".field-times").inner_text().strip() == "2"
    page.screenshot(path=str(shots / "admin-refused-connections.png"), full_page=True)

    connected = requests.post(f"{url}/setup", json={**body, "schema": SMS_CONFIG}, timeout=30)
    assert connected.status_code == 200
    page.goto(f"{url}/admin/learning/project/")
    assert page.locator("ul.messagelist li.warning").count() == 0
    assert page.locator("#result_list tbody tr:has-text('41')").count() == 1  # connected: a project now


def test_a_read_only_account_sees_every_page_and_no_act(pushed_project, live_server, tmp_path):
    """A lead who may watch but not steer (the four view permissions): the lists and the project
    page read as for an operator, with no act offered and no connect link."""
    from playwright.sync_api import sync_playwright

    from tests.console.conftest import READER, staff_user

    project, version, run = pushed_project
    staff_user("watcher", READER)
    shots = Path(os.environ.get("ALO_TEST_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    url = live_server.url
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/admin/login/")
            page.fill("#id_username", "watcher")
            page.fill("#id_password", "pw-watcher-1")
            page.click("input[type=submit]")
            page.wait_for_url(f"{url}/admin/")

            page.goto(f"{url}/admin/learning/project/")
            assert page.locator("#result_list tbody tr .field-serving").first.inner_text().strip() == version.version
            assert page.get_by_text("Connect a Label Studio project").count() == 0
            assert page.locator("select[name=action]").count() == 0  # no act: Django shows no action bar
            page.screenshot(path=str(shots / "readonly-projects.png"), full_page=True)

            page.goto(f"{url}/admin/learning/project/{project.pk}/change/")
            assert f"{version.version} (serving)" in page.locator(".field-serving_version").inner_text()
            assert page.locator("input[name=_save]").count() == 0 and page.locator("#id_strategy").count() == 0
            assert page.locator(".field-schedule").inner_text().split("\n")[-1].strip() == "off"
            assert "retrain every" in page.content().lower()  # the training policy, read-only
            page.screenshot(path=str(shots / "readonly-project.png"), full_page=True)

            page.goto(f"{url}/admin/learning/modelversion/")
            assert page.locator("#result_list tbody tr").count() == 1
            assert page.locator("select[name=action]").count() == 0
            page.screenshot(path=str(shots / "readonly-versions.png"), full_page=True)
            page.goto(f"{url}/admin/learning/project/connect/")
            assert "403" in page.title() or "Forbidden" in page.content()
        finally:
            browser.close()
