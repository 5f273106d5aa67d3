"""The console as a labeling lead uses it, in headless Chromium, against the service as `make run`
starts it (`manage.py serve`: gunicorn with DEBUG off, a Celery worker and beat on the embedded
filesystem broker) and a real Label Studio 1.23.2.

Log in with the account the environment bootstraps, connect a Label Studio project from the
console, train twice, change the strategy (which re-scores the queue), watch the scoring run's
progress, roll back and promote a version, and set a re-scoring schedule. Screenshots go to
ALO_TEST_SCREENSHOTS when set, else to the test's tmp folder.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import sms_rows
from tests.integration.conftest import ROOT, print_log_tail
from tests.integration.test_admin_pages import CHROMIUM, CHROMIUM_ARGS
from tests.integration.test_label_studio_e2e import create_project, log_in
from tests.integration.test_training_loop_e2e import import_annotated
from tests.support.processes import ManagedProcess, free_port, group_exists, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.database_independent]

LEAD, PASSWORD = "lead", "console-pw-81"


@pytest.fixture
def served(tmp_path, label_studio):
    """`manage.py serve` on embedded defaults, calling the real Label Studio, with a bootstrapped admin."""
    import subprocess

    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "MLFLOW_TRACKING_URI",
                        "ALO_TEST_DATABASE", "BASIC_AUTH_USER", "BASIC_AUTH_PASS", "DJANGO_DEBUG"}}
    env.update({"ALO_DATA_DIR": str(tmp_path / "data"), "LABEL_STUDIO_URL": label_studio.url,
                "LABEL_STUDIO_API_KEY": label_studio.token, "ALO_ADMIN_USER": LEAD, "ALO_ADMIN_PASSWORD": PASSWORD,
                "ALO_DEFAULT_FEATURES": "tfidf", "DJANGO_SETTINGS_MODULE": "orchestrator.settings"})
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True, timeout=300)
    port = free_port()
    serve = ManagedProcess([*manage, "serve", "--port", str(port)], log_path=tmp_path / "serve.log", env=env, cwd=ROOT)
    serve.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(url), timeout=90, what="/health")
        yield url
    finally:
        pgid = serve.pgid
        serve.stop()
        print_log_tail(serve.log_path)
    assert not group_exists(pgid), "serve left processes behind"


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/health", timeout=1).ok
    except requests.RequestException:
        return False


def _message(page) -> str:
    return " ".join(page.locator("ul.messagelist li").all_inner_texts())


def _submit(page, selector: str) -> None:
    """Click a form's button and wait for the page it leads to to load (a click returns once the
    navigation starts: reading the next page's messages before it loads reads nothing)."""
    with page.expect_navigation(wait_until="load"):
        page.click(selector)


def _act(page, action: str, row_text: str) -> str:
    """Tick the list row that shows `row_text`, run `action` on it, and return the message."""
    page.locator(f"#result_list tbody tr:has-text('{row_text}') input.action-select").first.check()
    page.select_option("select[name=action]", action)
    _submit(page, "button[name=index]")
    return _message(page)


def test_a_lead_steers_the_loop_from_the_console_in_a_browser(label_studio, served, tmp_path):
    from playwright.sync_api import sync_playwright

    ls = label_studio
    shots = Path(os.environ.get("ALO_TEST_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    rows = sms_rows(260)
    project, _ = create_project(ls, rows[60:])
    pid = project["id"]
    import_annotated(ls, pid, rows[:60])
    unlabeled = len(rows) - 60

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            static_failures: list[str] = []
            page.on("response", lambda r: static_failures.append(f"{r.status} {r.url}")
                    if "/static/" in r.url and r.status >= 400 else None)

            # Log in with the account ALO_ADMIN_USER / ALO_ADMIN_PASSWORD made.
            page.goto(f"{served}/admin/")
            page.fill("#id_username", LEAD)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            page.wait_for_url(f"{served}/admin/")
            header = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
            assert header not in ("rgba(0, 0, 0, 0)", "transparent"), "the admin's stylesheet did not apply"

            # Connect the Label Studio project from the console: Label Studio calls /setup on the service.
            page.goto(f"{served}/admin/learning/project/")
            page.click("text=Connect a Label Studio project")
            page.select_option("#id_project", str(pid))
            assert page.input_value("#id_url") == served
            page.screenshot(path=str(shots / "console-connect.png"), full_page=True)
            page.click("input[type=submit][value=Connect]")
            page.wait_for_url(re.compile(r".*/admin/learning/project/\d+/change/$"))
            assert f"Project {pid} (SMS e2e) is connected" in _message(page)
            project_page = page.url
            assert [b["url"] for b in ls.api("GET", "/api/ml", params={"project": pid})] == [served]
            in_ls = page.locator(".field-label_studio").inner_text()
            assert f"{len(rows)} tasks, 60 annotated, {unlabeled} in the queue" in in_ls
            assert "spam" in page.locator(".field-labels").inner_text()

            # Train from the project list. Again on the same annotations, the run says so and trains
            # nothing; "even on unchanged annotations" makes the second version. Each run names its version.
            for n, action in ((1, "train_now"), (None, "train_now"), (2, "train_even_if_unchanged")):
                page.goto(f"{served}/admin/learning/project/")
                assert "training asked for" in _act(page, action, "SMS e2e")
                if n is None:
                    page.goto(f"{served}/admin/learning/trainingrun/")
                    skipped = page.locator("#result_list tbody tr").filter(has_text=re.compile("skipped", re.I))
                    wait_until(lambda: page.reload() or skipped.filter(
                        has_text=f"the ones p{pid}-v1 learned").count() == 1, timeout=120, interval=1,
                        what="Train now on unchanged annotations to be skipped")
                    continue
                page.goto(f"{served}/admin/learning/modelversion/")
                wait_until(lambda: _reload_has(page, f"p{pid}-v{n}", "serving"), timeout=180, interval=1,
                           what=f"version {n} to train and serve")
            page.goto(f"{served}/admin/learning/trainingrun/")
            assert page.locator(f"#result_list tbody tr:has-text('p{pid}-v2')").count() == 1

            # Change the strategy on the project page: it re-scores the queue, and says which run does.
            page.goto(project_page)
            page.select_option("#id_strategy", "entropy")
            _submit(page, "input[name=_save]")
            said = _message(page)
            assert "strategy is now entropy; scoring run" in said, said
            run_pk = re.search(r"scoring run (\d+) re-scores", said).group(1)

            # Watch the run: the list refreshes itself while the run is active, then shows it done.
            loads: list[str] = []
            page.on("load", lambda p: loads.append(p.url))
            page.goto(f"{served}/admin/learning/scoringrun/")
            row = page.locator(f"#result_list tbody tr:has(a[href$='/scoringrun/{run_pk}/change/'])")
            first_seen = _text(row).lower()
            page.screenshot(path=str(shots / "console-scoring-runs-active.png"), full_page=True)
            wait_until(lambda: "succeeded" in _text(row).lower(), timeout=180, interval=1,
                       what="the scoring run to succeed (seen by the page's own refresh)")
            if "succeeded" not in first_seen:  # it was queued or running: the page reloaded itself to show it done
                assert len(loads) >= 2, (first_seen, loads)
            assert f"{unlabeled}/{unlabeled}" in row.inner_text()
            assert row.locator("progress").get_attribute("value") == str(unlabeled)
            page.screenshot(path=str(shots / "console-scoring-runs.png"), full_page=True)

            # Roll back to v1, then promote v2 again, from the version list.
            page.goto(f"{served}/admin/learning/modelversion/")
            said = _act(page, "roll_back", f"p{pid}-v2")
            assert f"p{pid}-v1 serves (was p{pid}-v2)" in said, said
            assert "serving" in page.locator(f"#result_list tbody tr:has-text('p{pid}-v1')").inner_text().lower()
            said = _act(page, "promote", f"p{pid}-v2")
            assert f"p{pid}-v2 serves (was p{pid}-v1)" in said, said
            page.screenshot(path=str(shots / "console-versions.png"), full_page=True)
            sorted_by = lambda: ls.api("GET", f"/api/projects/{pid}")["model_version"]  # noqa: E731
            wait_until(lambda: re.fullmatch(rf"p{pid}-v2(\.\d+)?", sorted_by()), timeout=180,
                     what="Label Studio's queue to sort by a push of v2 again")

            # A schedule in plain words.
            page.goto(project_page)
            page.select_option("#id_schedule_kind", "crontab")
            page.fill("#id_crontab", "0 2 * * *")
            _submit(page, "input[name=_save]")
            assert "re-scoring crontab 0 2 * * * (UTC)" in _message(page)
            page.goto(f"{served}/admin/learning/project/")
            assert "crontab 0 2 * * * (UTC)" in page.locator("#result_list tbody tr").first.inner_text()

            # The project page: the learning curve of both versions and the latest runs.
            page.goto(project_page)
            assert page.locator(".field-learning_curve svg circle").count() >= 2
            assert "succeeded" in page.locator(".field-recent_runs").inner_text().lower()
            page.screenshot(path=str(shots / "console-project.png"), full_page=True)
            assert static_failures == []

            # Label Studio's own page: the service's queue tab shows the id, the score and the text, in sight.
            queue = next(v for v in ls.api("GET", "/api/dm/views", params={"project": pid})
                         if v["data"].get("title") == "Active learning queue")
            log_in(page, ls)
            page.goto(f"{ls.url}/projects/{pid}/data?tab={queue['id']}")
            page.wait_for_load_state("networkidle")
            text_header = page.get_by_text("text", exact=True).first
            text_header.wait_for(timeout=30_000)
            box = text_header.bounding_box()
            page.screenshot(path=str(shots / "label-studio-queue-tab.png"))
            assert box is not None and box["x"] < 700, box  # was ~3,100 px to the right with every column shown
        finally:
            browser.close()

    # Label Studio counts one prediction per unlabeled task once old tags are gone.
    def counted_once() -> bool:
        listed = ls.api("GET", "/api/tasks", params={"project": pid, "page_size": 1})
        return ls.api("GET", "/api/predictions", params={"project": pid}).__len__() == unlabeled and \
            listed.get("total_predictions") == unlabeled
    wait_until(counted_once, timeout=120, interval=2, what="Label Studio to count each task's prediction once")


def _text(locator) -> str:
    """What the locator shows now ("" while the page is reloading itself)."""
    try:
        return locator.inner_text(timeout=2000)
    except Exception:  # Playwright's timeout or a navigation under way
        return ""


def _reload_has(page, *texts: str) -> bool:
    page.reload()
    body = page.locator("#result_list").inner_text() if page.locator("#result_list").count() else ""
    return any(all(t.lower() in line.lower() for t in texts) for line in body.splitlines())
