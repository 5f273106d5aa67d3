"""The Label Studio gateway: the one retry loop, and the Data Manager queue view it keeps."""
from __future__ import annotations

import pytest

from orchestrator.gateways import label_studio


@pytest.fixture
def views(monkeypatch):
    """Label Studio's Data Manager tabs of one project, in memory."""
    saved: list[dict] = []

    def save_view(ls_project_id, data, view_id=None):
        if view_id is None:
            saved.append({"id": len(saved) + 1, "project": ls_project_id, "data": data})
            return saved[-1]
        view = next(v for v in saved if v["id"] == view_id)
        view["data"] = data
        return view

    monkeypatch.setattr(label_studio, "list_views", lambda ls_project_id: [dict(v) for v in saved])
    monkeypatch.setattr(label_studio, "save_view", save_view)
    return saved


def test_queue_view_is_created_once_and_repaired_when_edited(views):
    first = label_studio.ensure_queue_view(7, "Active learning queue")
    assert label_studio.ensure_queue_view(7, "Active learning queue") == first and len(views) == 1
    views[0]["data"]["ordering"] = ["tasks:id"]
    label_studio.ensure_queue_view(7, "Active learning queue")
    assert views[0]["data"]["ordering"] == ["tasks:predictions_score"] and len(views) == 1
    assert views[0]["data"] == label_studio.queue_view_data("Active learning queue")


def test_queue_view_hides_what_an_annotator_does_not_need_and_leaves_a_leads_columns_alone(views):
    label_studio.ensure_queue_view(7, "Active learning queue")
    hidden = views[0]["data"]["hiddenColumns"]
    assert "tasks:predictions_score" not in hidden["explore"] and "tasks:id" not in hidden["explore"]
    assert {"tasks:total_annotations", "tasks:annotators", "tasks:predictions_results"} <= set(hidden["explore"])
    views[0]["data"]["hiddenColumns"] = {"explore": ["tasks:inner_id"], "labeling": []}  # a lead shows more
    views[0]["data"]["ordering"] = ["tasks:id"]
    label_studio.ensure_queue_view(7, "Active learning queue")
    assert views[0]["data"]["ordering"] == ["tasks:predictions_score"]
    assert views[0]["data"]["hiddenColumns"] == {"explore": ["tasks:inner_id"], "labeling": []}
    del views[0]["data"]["hiddenColumns"]  # a tab an older release made
    label_studio.ensure_queue_view(7, "Active learning queue")
    assert views[0]["data"]["hiddenColumns"] == hidden


@pytest.fixture
def no_wait(settings):
    settings.LABEL_STUDIO_RETRY_BACKOFF = 0.0
    settings.LABEL_STUDIO_RETRIES = 4


def failing(*errors):
    """A call that raises these errors one after the other, then answers "ok"."""
    calls = []

    def call():
        calls.append(len(calls))
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "ok"

    return call, calls


def test_transport_errors_5xx_and_429_are_retried_until_an_answer(no_wait):
    call, calls = failing(label_studio.LabelStudioError("GET x failed: timed out"),
                          label_studio.LabelStudioError("GET x answered 503", status_code=503),
                          label_studio.LabelStudioError("GET x answered 429", status_code=429))
    assert label_studio.with_retries(call, what="reading x") == "ok" and len(calls) == 4


def test_a_client_error_is_not_retried_and_the_error_says_what_failed(no_wait):
    call, calls = failing(label_studio.LabelStudioError("GET x answered 403: no access", status_code=403))
    with pytest.raises(label_studio.LabelStudioError, match=r"reading x failed after 1 attempt\(s\): .*403") as error:
        label_studio.with_retries(call, what="reading x")
    assert error.value.status_code == 403 and len(calls) == 1


def test_the_last_attempt_gives_up_with_its_status(no_wait):
    call, calls = failing(*[label_studio.LabelStudioError("answered 502", status_code=502)] * 4)
    with pytest.raises(label_studio.LabelStudioError, match="after 4 attempt") as error:
        label_studio.with_retries(call, what="reading x")
    assert error.value.status_code == 502 and len(calls) == 4


def test_retry_if_chooses_what_is_retried_and_before_retry_runs_between_attempts(no_wait):
    seen = []
    call, calls = failing(label_studio.LabelStudioError("answered 400: a task is gone", status_code=400))
    answer = label_studio.with_retries(call, what="importing", retry_if=lambda e: e.status_code == 400,
                                       before_retry=lambda e: seen.append((len(calls), e.status_code)))
    assert answer == "ok" and seen == [(1, 400)]  # after the failed attempt, before the next one


def test_what_before_retry_raises_ends_the_loop(no_wait):
    call, calls = failing(label_studio.LabelStudioError("timed out"))

    def gives_up(error):
        raise label_studio.LabelStudioError("still applying the lost import")

    with pytest.raises(label_studio.LabelStudioError, match="still applying"):
        label_studio.with_retries(call, what="importing", before_retry=gives_up)
    assert len(calls) == 1


def test_with_retry_if_an_error_that_is_not_label_studios_goes_up_as_it_is(no_wait):
    call, calls = failing(ValueError("a bug of the caller's"))
    with pytest.raises(ValueError, match="bug"):
        label_studio.with_retries(call, what="importing",
                                  retry_if=lambda e: isinstance(e, label_studio.LabelStudioError))
    assert len(calls) == 1
    # A whole read (no retry_if) reports everything as a failure of what it was doing.
    call, calls = failing(ValueError("a task without its data"))
    with pytest.raises(label_studio.LabelStudioError, match="reading x failed after 1 attempt.*without its data"):
        label_studio.with_retries(call, what="reading x", retry_if=None)
    assert len(calls) == 1


def test_a_callable_what_names_the_state_when_the_loop_gives_up(no_wait):
    pending = [1, 2, 3, 4]
    call, calls = failing(*[label_studio.LabelStudioError("answered 503", status_code=503)] * 4)
    with pytest.raises(label_studio.LabelStudioError, match=r"sending 1 task\(s\) failed after 4"):
        label_studio.with_retries(call, what=lambda: f"sending {len(pending)} task(s)",
                                  before_retry=lambda e: pending.pop())


@pytest.fixture
def label_studio_at(settings, monkeypatch):
    """The configured Label Studio; its GETs recorded and answered by `answers` (path -> (status, body))."""
    settings.LABEL_STUDIO_URL, settings.LABEL_STUDIO_API_KEY = "http://ls.internal:8080", "key"
    monkeypatch.setattr(label_studio, "_texts", label_studio._TextCache(10))
    asked, answers = [], {}

    def request(method, path, **kwargs):
        asked.append(path)
        status, body = answers.get(path, (200, f"text of {path}"))
        if status >= 400:
            raise label_studio.LabelStudioError(f"GET {path} answered {status}: {body}", status_code=status)
        return type("Response", (), {"text": body})()

    monkeypatch.setattr(label_studio, "_request", request)
    return asked, answers


@pytest.mark.parametrize("url", ["/data/upload/3/a.txt", "http://ls.internal:8080/data/upload/3/a.txt",
                                 "/data/local-files/?d=texts/a.txt", "/storage-data/uploaded/?filepath=3/a.txt"])
def test_task_files_on_label_studio_are_read(label_studio_at, url):
    asked, _ = label_studio_at
    assert label_studio.fetch_text(url, 5).startswith("text of ")
    assert len(asked) == 1


@pytest.mark.parametrize("url", ["/api/users/", "http://ls.internal:8080/api/projects/1/", "/data/upload/../../api/users/",
                                 "/data/upload/%2e%2e/%2e%2e/api/users/", "/user/account/", "/tasks/1/resolve/?fileuri=x&y=1",
                                 "http://elsewhere:8080/data/upload/3/a.txt", "file:///etc/passwd"])
def test_other_paths_are_refused_without_a_call(label_studio_at, url):
    asked, _ = label_studio_at
    with pytest.raises(label_studio.ForeignUrlError):
        label_studio.fetch_text(url, 5)
    assert asked == []


@pytest.mark.parametrize("task_id", [None, "5", 5.0, True, -1, 10**30, [5]])
def test_a_cloud_storage_url_needs_the_tasks_integer_id(label_studio_at, task_id):
    asked, _ = label_studio_at
    with pytest.raises(label_studio.ForeignUrlError, match="integer id"):
        label_studio.fetch_text("s3://bucket/key.txt", task_id)
    assert asked == []
    assert label_studio.fetch_text("s3://bucket/key.txt", 5).startswith("text of tasks/5/resolve/?fileuri=")


def test_label_studios_error_body_is_not_passed_on(label_studio_at):
    _, answers = label_studio_at
    answers["data/upload/3/secret.txt"] = (403, '{"detail": "token of admin@example.com expired"}')
    with pytest.raises(label_studio.LabelStudioError) as raised:
        label_studio.fetch_text("/data/upload/3/secret.txt", 5)
    assert str(raised.value) == "Label Studio answered 403 for the text of task 5"
    assert "admin@example.com" not in str(raised.value)
