"""The console's admin pages through Django's test client: the project page (strategy, its options,
the schedule, the learning curve), the version actions and the run actions, and who may use them."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.urls import reverse

from orchestrator.learning import steering
from orchestrator.learning.models import ModelVersion, Project, ScoringRun


class _Form(HTMLParser):
    """The values a browser would send for the page's main form (inputs, selects, textareas)."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._select = self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button", "file"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.data.setdefault(name, []).append(a.get("value", "on" if a.get("type") == "checkbox" else ""))
        elif tag == "select" and name:
            self._select, self._first = name, None
            self.data.setdefault(name, [])
        elif tag == "option" and self._select:
            if self._first is None:
                self._first = a.get("value", "")
            if "selected" in a:
                self.data[self._select].append(a.get("value", ""))
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = [""]

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            if not self.data[self._select] and self._first is not None:
                self.data[self._select] = [self._first]
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea][0] += data


def form_of(response, **changes) -> dict:
    parser = _Form()
    parser.feed(response.content.decode())
    data = {k: v if len(v) > 1 else v[0] for k, v in parser.data.items() if v}
    data.update(changes)
    data["_save"] = "Save"
    return data


@pytest.fixture
def page(admin_client, two_versions):
    project, _, _ = two_versions
    return reverse("admin:learning_project_change", args=[project.pk])


def test_the_project_page_shows_labels_curve_jobs_and_strategies_with_descriptions(admin_client, two_versions,
                                                                                    page, fake_ls):
    project, first, second = two_versions
    html = admin_client.get(page).content.decode()
    assert "<svg" in html and "macro-F1" in html  # the learning curve, drawn from the two versions
    assert "ham, spam" in html or "spam, ham" in html  # the label config's labels
    assert "margin: " in html and "entropy: " in html  # each strategy with its one-line description
    assert "none: the last /setup was accepted" in html
    fake_ls.project["title"] = "SMS triage"
    admin_client.get(page)
    project.refresh_from_db()
    assert project.title == "SMS triage"  # as Label Studio shows it now
    assert first.version in html and second.version in html
    assert "being deleted" not in html
    fake_ls.predictions = [{"task": 1, "model_version": first.version}, {"task": 1, "model_version": second.version}]
    fake_ls.project["model_version"] = second.version
    assert "2 predictions (1 of older pushes, being deleted)" in admin_client.get(page).content.decode()


def test_changing_the_strategy_in_the_form_re_scores_and_says_so(admin_client, two_versions, page, fake_ls,
                                                                 queued_runs, django_capture_on_commit_callbacks):
    project, _, second = two_versions
    before = project.strategy
    wanted = "entropy" if before != "entropy" else "margin"
    with django_capture_on_commit_callbacks(execute=True):  # the admin saves in a transaction; jobs go after it
        response = admin_client.post(page, form_of(admin_client.get(page), strategy=wanted, strategy_params="{}"),
                                     follow=True)
    assert response.status_code == 200
    project.refresh_from_db()
    run = ScoringRun.objects.get(project=project, trigger="strategy")
    assert project.strategy == wanted and run.model_version == second and queued_runs == [run.pk]
    assert f"strategy is now {wanted}; scoring run {run.pk} re-scores the queue" in response.content.decode()


@pytest.mark.parametrize("changes, error", [
    ({"strategy": "margin", "strategy_params": '{"candidates": 5}'}, "margin takes no options"),
    ({"strategy": "ranked_batch", "strategy_params": '{"candidates": -3}'}, "candidates"),
    ({"strategy": "margin", "strategy_params": "[1, 2]"}, "must be a JSON object"),
    ({"strategy": "nope"}, "Select a valid choice"),
    ({"schedule_kind": "hours", "every_hours": ""}, "every_hours must be a number of hours"),
    ({"schedule_kind": "hours", "every_hours": "0.001"}, "between 1/60 (a minute) and 8784"),
    ({"schedule_kind": "crontab", "crontab": "61 * * * *"}, "crontab &#x27;61 * * * *&#x27; is not valid"),
    ({"schedule_kind": "crontab", "crontab": "0 2 * *"}, "a crontab has five fields"),
])
def test_a_bad_strategy_option_or_schedule_is_a_form_error_and_changes_nothing(admin_client, two_versions, page,
                                                                               fake_ls, queued_runs, changes, error):
    project, _, _ = two_versions
    stored = (project.strategy, project.strategy_params)
    response = admin_client.post(page, form_of(admin_client.get(page), **changes))
    assert response.status_code == 200  # the form again, with the error on it
    html = response.content.decode()
    assert "errorlist" in html and error in html
    project.refresh_from_db()
    assert (project.strategy, project.strategy_params) == stored
    assert not ScoringRun.objects.filter(project=project).exists() and queued_runs == []
    assert steering.schedule_of(project).kind == "off"


def test_the_schedule_is_edited_in_plain_words_and_stored_as_a_periodic_task(admin_client, two_versions, page,
                                                                            fake_ls):
    from django_celery_beat.models import PeriodicTask

    project, _, _ = two_versions
    response = admin_client.post(page, form_of(admin_client.get(page), schedule_kind="crontab",
                                               crontab="30 2 * * 1"), follow=True)
    assert "re-scoring crontab 30 2 * * 1 (UTC)" in response.content.decode()
    task = PeriodicTask.objects.get(name=steering.schedule_task_name(project.ls_project_id))
    assert task.enabled and str(task.crontab.minute) == "30" and task.crontab.day_of_week == "1"
    admin_client.post(page, form_of(admin_client.get(page), schedule_kind="hours", every_hours="6"), follow=True)
    assert steering.schedule_of(project).describe() == "every 6 hours"
    admin_client.post(page, form_of(admin_client.get(page), schedule_kind="off"), follow=True)
    assert steering.schedule_of(project).kind == "off"
    assert not PeriodicTask.objects.filter(name=steering.schedule_task_name(project.ls_project_id)).exists()


def test_roll_back_promote_and_retire_from_the_version_list(admin_client, two_versions, fake_ls, queued_runs):
    project, first, second = two_versions
    versions_page = reverse("admin:learning_modelversion_changelist")
    response = admin_client.post(versions_page, {"action": "roll_back", "_selected_action": [second.pk]}, follow=True)
    project.refresh_from_db()
    assert project.serving_version == first
    run = ScoringRun.objects.get(project=project, trigger="promote")
    assert run.model_version == first and f"{first.version} serves" in response.content.decode()
    response = admin_client.post(versions_page, {"action": "roll_back", "_selected_action": [first.pk]}, follow=True)
    assert "no version served before" in response.content.decode()  # nothing before the first one
    response = admin_client.post(versions_page, {"action": "promote", "_selected_action": [second.pk]}, follow=True)
    project.refresh_from_db()
    assert project.serving_version == second and ModelVersion.objects.get(pk=first.pk).status == "ready"
    response = admin_client.post(versions_page, {"action": "retire", "_selected_action": [second.pk]}, follow=True)
    assert "promote another version or roll back first, then retire it" in response.content.decode()
    assert ModelVersion.objects.get(pk=second.pk).status == ModelVersion.Status.SERVING
    admin_client.post(versions_page, {"action": "retire", "_selected_action": [first.pk]}, follow=True)
    assert ModelVersion.objects.get(pk=first.pk).status == ModelVersion.Status.RETIRED
    response = admin_client.post(versions_page, {"action": "roll_back", "_selected_action": [second.pk]}, follow=True)
    assert "no version served before" in response.content.decode()  # the retired one is skipped


def test_a_queued_run_is_cancelled_from_the_run_list_and_the_list_refreshes_while_one_is_active(
        admin_client, two_versions, fake_ls, queued_runs):
    from orchestrator.learning.scoring import runs

    project, _, _ = two_versions
    run = runs.request_scoring(project, trigger="admin")
    listing = reverse("admin:learning_scoringrun_changelist")
    assert admin_client.get(listing)["Refresh"] == "3"
    response = admin_client.post(listing, {"action": "cancel", "_selected_action": [run.pk]}, follow=True)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.CANCELLED
    assert f"Scoring run {run.pk} ({run.tag}) is cancelled before it started" in response.content.decode()
    assert "Refresh" not in admin_client.get(listing)


def test_a_running_training_is_cancelled_from_the_training_run_list(admin_client, two_versions):
    from orchestrator.learning.models import TrainingRun

    project, _, _ = two_versions
    running = TrainingRun.objects.create(project=project, trigger="start_training")
    listing = reverse("admin:learning_trainingrun_changelist")
    assert admin_client.get(listing)["Refresh"] == "3"
    response = admin_client.post(listing, {"action": "cancel", "_selected_action": [running.pk]}, follow=True)
    assert f"Training run {running.pk} of {project} stops before its next phase" in response.content.decode()
    assert TrainingRun.objects.get(pk=running.pk).cancel_requested_by == "admin"


def test_records_the_service_writes_offer_no_add_button(admin_client, two_versions):
    for name in ("project", "modelversion", "scoringrun", "trainingrun"):
        add = reverse(f"admin:learning_{name}_add")
        assert admin_client.get(add).status_code == 403
        assert f'href="{add}"' not in admin_client.get(reverse(f"admin:learning_{name}_changelist")).content.decode()


def test_the_console_asks_anonymous_users_to_log_in_and_refuses_non_staff(client, two_versions):
    from django.contrib.auth import get_user_model

    page = reverse("admin:learning_project_changelist")
    assert client.get(page)["Location"].startswith(reverse("admin:login"))
    get_user_model().objects.create_user("annotator", password="pw-annotator-1")
    client.login(username="annotator", password="pw-annotator-1")
    assert client.get(page)["Location"].startswith(reverse("admin:login"))  # logged in, but not staff
    assert Project.objects.count() == 1


def test_the_admin_stylesheets_are_served_with_debug_off(settings, db):
    from django.test import Client

    settings.DEBUG = False
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200 and b"body" in b"".join(response.streaming_content)
    assert Client().get("/static/admin/css/no-such-file.css").status_code == 404


def _setup_from_label_studio(extra_params: str = ""):
    """What Label Studio does while connecting a model: it calls /setup on the service."""
    import orjson
    from django.test import Client

    from orchestrator.gateways import label_studio
    from tests.conftest import SMS_CONFIG

    def connect(ls_project_id, url):
        body = {"project": f"{ls_project_id}.1717171717", "schema": SMS_CONFIG, "hostname": "http://127.0.0.1:8080",
                "access_token": "t", "extra_params": extra_params}
        answer = Client().post("/setup", orjson.dumps(body), content_type="application/json")
        if answer.status_code != 200:  # Label Studio answers its own 400, quoting the model's refusal
            raise label_studio.LabelStudioError(f"POST api/ml/ answered 400: {answer.content[:200]!r}",
                                                status_code=400)
    return connect


def test_a_project_is_connected_from_the_console_and_its_page_opens(admin_client, db, fake_ls, settings):
    settings.ALO_SERVICE_URL = "http://alo.internal:9090"
    fake_ls.others = {31: "News topics", 32: ""}
    fake_ls.on_connect = _setup_from_label_studio()
    connect = reverse("admin:learning_project_connect")
    assert f'href="{connect}"' in admin_client.get(reverse("admin:learning_project_changelist")).content.decode()
    html = admin_client.get(connect).content.decode()
    assert "31: News topics" in html and "32: (untitled)" in html and 'value="http://alo.internal:9090"' in html
    response = admin_client.post(connect, {"project": "31", "url": "http://alo.internal:9090/",
                                           "title": "Active learning"}, follow=True)
    project = Project.objects.get(ls_project_id=31)
    assert project.title == "News topics"  # /setup does not send it; the console keeps Label Studio's
    assert response.redirect_chain[-1][0] == reverse("admin:learning_project_change", args=[project.pk])
    assert "is connected: Label Studio uses http://alo.internal:9090 as its model" in response.content.decode()
    assert fake_ls.backends == [{"id": 1, "project": 31, "url": "http://alo.internal:9090",
                                 "title": "Active learning", "auth": None}]
    assert "31: News topics (connected)" in admin_client.get(connect).content.decode()


def test_a_refused_connection_is_a_form_error_that_quotes_the_services_reason(admin_client, sms_project, fake_ls):
    fake_ls.others = {7: "SMS", 31: "News topics"}
    fake_ls.on_connect = _setup_from_label_studio(extra_params='{"strategy": "foo"}')
    connect = reverse("admin:learning_project_connect")
    response = admin_client.post(connect, {"project": "7", "url": "http://127.0.0.1:9090", "title": "AL"})
    html = response.content.decode()
    assert response.status_code == 200 and "Label Studio did not connect project 7" in html
    assert "this service refused its /setup" in html and "strategy &#x27;foo&#x27;" in html
    response = admin_client.post(connect, {"project": "31", "url": "http://127.0.0.1:9090", "title": "AL"})
    assert "its log says why (setup_refused)" in response.content.decode()  # no project here to keep it on
    assert fake_ls.backends == [] and not Project.objects.filter(ls_project_id=31).exists()
    response = admin_client.post(connect, {"project": "99", "url": "http://127.0.0.1:9090", "title": "AL"})
    assert "Select a valid choice" in response.content.decode()  # a project Label Studio does not list


def test_a_label_config_the_service_cannot_learn_is_refused_before_label_studio_is_asked(admin_client, db, fake_ls):
    fake_ls.others = {31: "Boxes"}
    fake_ls.project["label_config"] = ('<View><Image name="img" value="$image"/><RectangleLabels name="box" '
                                       'toName="img"><Label value="car"/></RectangleLabels></View>')
    fake_ls.on_connect = _setup_from_label_studio()
    response = admin_client.post(reverse("admin:learning_project_connect"),
                                 {"project": "31", "url": "http://127.0.0.1:9090", "title": "AL"})
    html = response.content.decode()
    assert "project 31&#x27;s label config is not one this service learns" in html and "RectangleLabels" in html
    assert fake_ls.backends == []


def test_the_connect_page_says_when_label_studio_is_not_configured(admin_client, db, settings):
    settings.LABEL_STUDIO_URL = settings.LABEL_STUDIO_API_KEY = ""
    html = admin_client.get(reverse("admin:learning_project_connect")).content.decode()
    assert "LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are unset" in html and "disabled" in html


def test_a_read_only_account_sees_the_pages_but_no_act_and_a_forged_action_changes_nothing(
        client, two_versions, fake_ls, queued_runs):
    from tests.console.conftest import OPERATOR, READER, staff_user

    project, first, second = two_versions
    staff_user("watcher", READER)
    client.login(username="watcher", password="pw-watcher-1")
    connect = reverse("admin:learning_project_connect")
    pages = {"project": ["score_and_push", "train_now", "train_even_if_unchanged", "roll_back"],
             "modelversion": ["promote", "roll_back", "retire"], "scoringrun": ["cancel", "retry"],
             "trainingrun": ["cancel", "retry"]}
    for name, acts in pages.items():
        html = client.get(reverse(f"admin:learning_{name}_changelist")).content.decode()
        assert client.get(reverse(f"admin:learning_{name}_changelist")).status_code == 200, name
        assert not any(f'value="{act}"' in html for act in acts), name
    assert f'href="{connect}"' not in client.get(reverse("admin:learning_project_changelist")).content.decode()
    refused = client.get(connect)
    assert refused.status_code == 403
    page = client.get(reverse("admin:learning_project_change", args=[project.pk])).content.decode()
    assert "Retrain every" in page and 'name="training_policy-0-retrain_every"' not in page  # read, not edited
    client.post(reverse("admin:learning_modelversion_changelist"),
                {"action": "roll_back", "_selected_action": [second.pk]}, follow=True)
    client.post(reverse("admin:learning_project_changelist"),
                {"action": "score_and_push", "_selected_action": [project.pk]}, follow=True)
    project.refresh_from_db()
    assert project.serving_version == second and not ScoringRun.objects.filter(project=project).exists()
    assert queued_runs == []

    staff_user("operator", OPERATOR)
    client.login(username="operator", password="pw-operator-1")
    html = client.get(reverse("admin:learning_modelversion_changelist")).content.decode()
    assert all(f'value="{act}"' in html for act in pages["modelversion"])
    assert f'href="{connect}"' in client.get(reverse("admin:learning_project_changelist")).content.decode()
    page = client.get(reverse("admin:learning_project_change", args=[project.pk])).content.decode()
    assert 'name="training_policy-0-retrain_every"' in page and 'name="scoring_policy-0-chunk_size"' in page
    client.post(reverse("admin:learning_modelversion_changelist"),
                {"action": "roll_back", "_selected_action": [second.pk]}, follow=True)
    project.refresh_from_db()
    assert project.serving_version == first
