"""Which scoring run answers a request: new, resumed or already covering it; triggers; beat's resumption."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator.learning.models import ScoringRun
from orchestrator.learning.scoring import job, runs
from orchestrator.learning.training.fit import train_model_version
from tests.conftest import sms_rows
from tests.factories import examples, scoring_run
from tests.learning.scoring.helpers import score_now


def test_a_new_version_supersedes_the_running_push_and_removes_its_partial_tag(trained_sms_project, fake_ls, queued_runs):
    project, v1 = trained_sms_project
    first = score_now(project)
    assert fake_ls.project["model_version"] == v1.version

    five_hundred = examples(sms_rows(500))
    v2 = train_model_version(project=project, examples=five_hundred)  # promoted: asks for a push of v2
    project.refresh_from_db()
    assert queued_runs and ScoringRun.objects.get(pk=queued_runs[-1]).tag == v2.version
    stale = scoring_run(project, v1, tag=f"{v1.version}.2", trigger="schedule")
    assert job.run_scoring(stale.pk) == ScoringRun.Status.SUPERSEDED

    # While v2's push runs, v3 is promoted: v2's run stops after its chunk and its predictions go.
    v2_run = ScoringRun.objects.get(pk=queued_runs[-1])

    def promote_v3():
        if not fake_ls.on_import.done:
            fake_ls.on_import.done = True
            train_model_version(project=project, examples=five_hundred[:450])

    promote_v3.done = False
    fake_ls.on_import = promote_v3
    assert job.run_scoring(v2_run.pk) == ScoringRun.Status.SUPERSEDED
    assert v2.version not in fake_ls.model_versions(0)
    assert fake_ls.project["model_version"] == v1.version  # the last complete push keeps ordering the queue

    fake_ls.on_import = None
    v3_run = ScoringRun.objects.get(pk=queued_runs[-1])
    job.run_scoring(v3_run.pk)
    assert fake_ls.model_versions(0) == {v3_run.tag: 2500}  # v1's predictions deleted after the switch
    assert first.tag != v3_run.tag and fake_ls.project["model_version"] == v3_run.tag


def test_new_tasks_get_the_current_tag_and_the_schedule_only_rescores_what_can_change(trained_sms_project, fake_ls,
                                                                                        queued_runs):
    project, version = trained_sms_project
    full = score_now(project)
    for i in range(2501, 2551):
        fake_ls.texts[i] = f"new message number {i}, call now to win"
    assert runs.scheduled_mode(project) == ScoringRun.Mode.INCREMENTAL
    incremental = score_now(project, mode=ScoringRun.Mode.INCREMENTAL)
    assert incremental.tag == full.tag and incremental.high_water == 2550 and incremental.done == 50
    assert fake_ls.tags_per_unlabeled_task(full.tag) == {1: 2550}

    project.strategy = "ranked_batch"
    project.save()
    assert runs.scheduled_mode(project) == ScoringRun.Mode.FULL
    # Ranked batch ranks the whole pool: the scores are the ranks, each one once.
    fake_ls.labeled = {1, 2, 3, 4, 5}
    ranked = score_now(project)
    assert ranked.tag == f"{version.version}.2" and fake_ls.project["model_version"] == ranked.tag
    scores = sorted(p["score"] for p in fake_ls.predictions if p["model_version"] == ranked.tag)
    assert len(scores) == 2545 and np.allclose(scores, np.arange(2545) / 2545, atol=1e-6)
    assert fake_ls.model_versions(0) == {ranked.tag: 2545}


def test_new_tasks_after_a_rescoring_failed_midway_resume_it_under_its_tag(trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project
    first = score_now(project)
    project.strategy = "margin"
    project.save()
    fake_ls.import_faults = ["pass", "fail", "fail", "fail"]
    rescoring = score_now(project)  # switched Label Studio to its tag after the first chunk, then failed
    assert rescoring.status == ScoringRun.Status.FAILED and fake_ls.project["model_version"] == rescoring.tag
    fake_ls.texts.update({i: f"urgent! claim your reward {i} now" for i in range(2501, 2511)})
    resumed = score_now(project, mode=ScoringRun.Mode.INCREMENTAL)  # TASKS_CREATED
    assert resumed.pk == rescoring.pk and resumed.status == ScoringRun.Status.SUCCEEDED
    assert fake_ls.tags_per_unlabeled_task(rescoring.tag) == {1: 2510}
    assert first.tag != rescoring.tag and fake_ls.model_versions(0) == {rescoring.tag: 2510}


def test_tasks_created_queues_one_incremental_run_for_a_burst(trained_sms_project, fake_ls, queued_runs, client):
    project, version = trained_sms_project
    score_now(project)
    body = {"action": "TASKS_CREATED", "project": {"id": project.ls_project_id}, "tasks": [{"id": 2501}]}
    for _ in range(5):
        assert client.post("/webhook", data=body, content_type="application/json").status_code == 201
    incremental = ScoringRun.objects.filter(project=project, mode=ScoringRun.Mode.INCREMENTAL)
    assert incremental.count() == 1 and queued_runs == [incremental.get().pk]


def test_beat_resumes_a_failed_push_once_it_has_rested(trained_sms_project, fake_ls, queued_runs):
    from datetime import timedelta

    from django.utils import timezone

    project, version = trained_sms_project
    fake_ls.import_faults = ["pass", "fail", "fail", "fail"]
    run = score_now(project)
    assert run.status == ScoringRun.Status.FAILED
    assert runs.reconcile()["scoring_resumed"] == 0  # too soon
    ScoringRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(minutes=10))
    assert runs.reconcile()["scoring_resumed"] == 1 and queued_runs == [run.pk]
    job.run_scoring(run.pk)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.SUCCEEDED and run.trigger == "resume"
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}
    assert runs.reconcile()["scoring_resumed"] == 0


def test_a_project_whose_resumption_fails_leaves_the_others_resumed(trained_sms_project, fake_ls, queued_runs,
                                                                     monkeypatch, caplog):
    from datetime import timedelta

    from django.utils import timezone

    from orchestrator.learning.models import Project

    project, version = trained_sms_project
    fake_ls.import_faults = ["pass", "fail", "fail", "fail"]
    run = score_now(project)
    other = Project.objects.create(ls_project_id=3, label_config=project.label_config,
                                   label_config_digest=project.label_config_digest)
    poisoned = scoring_run(other, None, tag="cold-start", status=ScoringRun.Status.FAILED)
    ScoringRun.objects.filter(pk__in=[run.pk, poisoned.pk]).update(finished_at=timezone.now() - timedelta(minutes=10))
    request = runs.request_scoring

    def failing_for_project_3(target, **kwargs):
        if target.ls_project_id == 3:
            raise ValueError("a row no run can be made of")
        return request(target, **kwargs)

    monkeypatch.setattr(runs, "request_scoring", failing_for_project_3)
    outcome = runs.reconcile()
    assert outcome["scoring_resumed"] == 1 and outcome["projects_failed"] == 1 and queued_runs == [run.pk]
    assert f"reconcile_scoring_failed project_pk={other.pk}" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_triggers_firing_at_the_same_moment_share_one_run(trained_sms_project, fake_ls, queued_runs, monkeypatch):
    import threading
    import time

    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL; SQLite serializes every write transaction (BEGIN IMMEDIATE)")
    project, version = trained_sms_project
    pick = runs._pick_run

    def slow_pick(locked, **kwargs):
        time.sleep(0.3)  # widen the window between looking for a run and creating one
        return pick(locked, **kwargs)

    monkeypatch.setattr(runs, "_pick_run", slow_pick)
    start, picked, errors = threading.Barrier(3), [], []

    def trigger(name):
        try:
            start.wait()
            picked.append(runs.request_scoring(project, trigger=name).pk)
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger, args=(name,)) for name in ("promotion", "admin", "schedule")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(picked) == 3 and len(set(picked)) == 1
    assert ScoringRun.objects.filter(project=project).count() == 1 and queued_runs == picked[:1]


def test_a_cancelled_push_stops_after_its_chunk_and_a_retry_goes_on_from_there(trained_sms_project, fake_ls,
                                                                                queued_runs):
    project, version = trained_sms_project
    run = runs.request_scoring(project, trigger="manual")
    imports = []

    def cancel_at_the_second_chunk():
        imports.append(1)
        if len(imports) == 2:
            runs.cancel(run, by="lead")

    fake_ls.on_import = cancel_at_the_second_chunk
    assert job.run_scoring(run.pk) == ScoringRun.Status.CANCELLED
    run.refresh_from_db()
    assert (run.status, run.error) == (ScoringRun.Status.CANCELLED, "cancelled by lead")
    assert 0 < run.done < 2500 and fake_ls.project["model_version"] == run.tag  # it switched after its first chunk
    with pytest.raises(runs.RunError, match=f"scoring run {run.pk} is cancelled: only a queued or running run"):
        runs.cancel(run)

    fake_ls.on_import = None
    again = runs.retry(run)
    assert again.pk == run.pk and again.status == ScoringRun.Status.QUEUED and queued_runs[-1] == run.pk
    assert job.run_scoring(run.pk) == ScoringRun.Status.SUCCEEDED
    run.refresh_from_db()
    assert run.done == 2500 and run.attempts == 2
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}  # each task once, none twice or missing
    with pytest.raises(runs.RunError, match="succeeded: re-score the project instead"):
        runs.retry(run)


def test_a_push_cancelled_before_it_switched_the_queue_is_retried_as_a_new_run(trained_sms_project, fake_ls,
                                                                               queued_runs):
    project, version = trained_sms_project
    run = runs.request_scoring(project, trigger="manual")
    fake_ls.on_import = lambda: runs.cancel(run) if run.status != ScoringRun.Status.CANCELLED else None
    job.run_scoring(run.pk)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.CANCELLED and run.switched_at is None
    assert run.tag not in fake_ls.model_versions(0)  # its partial predictions went
    fake_ls.on_import = None
    again = runs.retry(run)
    assert again.pk != run.pk and again.tag == f"{version.version}.2"
    assert job.run_scoring(again.pk) == ScoringRun.Status.SUCCEEDED
    assert fake_ls.tags_per_unlabeled_task(again.tag) == {1: 2500}


def test_retrying_a_run_of_a_version_that_no_longer_serves_starts_a_run_of_what_serves(trained_sms_project, fake_ls,
                                                                                        queued_runs):
    project, v1 = trained_sms_project
    old = runs.request_scoring(project, trigger="manual")
    runs.cancel(old)
    v2 = train_model_version(project=project, examples=examples(sms_rows(450)))
    answer = runs.retry(old)
    assert answer.pk != old.pk and answer.model_version == v2
