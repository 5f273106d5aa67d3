"""The push in process, against an in-memory Label Studio that can lose answers and go down:
exactly one prediction per unlabeled task, most informative first, through failures.

The real server, worker and broker are exercised in tests/integration/test_scoring_e2e.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import strategies
from backends import backend_for
from orchestrator.gateways import label_studio
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.models import ScoringPolicy, ScoringPool, ScoringRun
from orchestrator.learning.scoring import job, push, runs
from orchestrator.learning.scoring.chunks import ChunkSizer
from tests.learning.scoring.helpers import score_now
from tests.support.label_studio import MEMORY_EFFICIENT_IMPORT


def test_a_full_run_gives_every_unlabeled_task_one_prediction_and_makes_label_studio_sort_by_it(
        trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project
    fake_ls.labeled = {1, 2, 3}
    fake_ls.predictions.append({"task": 10, "model_version": "someone else's model", "score": 0.1, "result": []})
    run = score_now(project)

    assert run.status == ScoringRun.Status.SUCCEEDED and run.tag == version.version
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2497}
    assert run.done == run.total == 2497 and fake_ls.imports == 3  # 500, then 1,000, 997 (quick answers)
    # Most informative first: Label Studio sorts by the tag as soon as the first chunk landed,
    # and that chunk holds the 500 lowest scores of all.
    assert fake_ls.project_at_import == ["AL orchestrator", run.tag, run.tag] and run.switched_at is not None
    first_chunk = [p["score"] for p in fake_ls.predictions if p["model_version"] == run.tag][:500]
    everything = sorted(p["score"] for p in fake_ls.predictions if p["model_version"] == run.tag)
    assert sorted(first_chunk) == everything[:500] and first_chunk == sorted(first_chunk)
    assert not ScoringPool.objects.filter(run=run).exists()  # dropped once pushed
    # Label Studio is asked for the tag's count once (then each import's answer keeps it), once
    # by the switch and once by the clean-up; not before every chunk (that would be 5).
    assert fake_ls.counted == 3
    assert fake_ls.project == {"model_version": version.version, "sampling": "Uncertainty sampling"}
    assert fake_ls.views == [{"id": 1, "project": project.ls_project_id, "data": label_studio.queue_view_data(
        "Active learning queue")}]
    assert any(p["model_version"] == "someone else's model" for p in fake_ls.predictions)  # never touched
    assert set(run.timings) >= {"load", "read", "score", "push", "switch"}
    # Ascending score is descending least-confidence priority, from the served model's probabilities
    # (margin, a new project's strategy, orders two choices exactly as least confidence does).
    ours = sorted((p for p in fake_ls.predictions if p["model_version"] == run.tag), key=lambda p: p["task"])
    model = project.serving_version and model_cache.load(version.model_uri, backend_for(project.label_config))
    probabilities = model.predict_proba([fake_ls.texts[p["task"]] for p in ours])
    expected = 1 - strategies.priorities("least_confidence", probabilities=probabilities)
    assert np.allclose([p["score"] for p in ours], expected, atol=1e-6)
    assert ours[0]["result"][0]["value"]["choices"][0] in {"ham", "spam"}


def test_lost_answers_and_an_outage_end_with_exactly_one_prediction_after_the_rerun(trained_sms_project, fake_ls,
                                                                                      queued_runs, monkeypatch):
    project, version = trained_sms_project
    ScoringPolicy.objects.filter(project=project).update(chunk_size=300)
    # Applied but reported failed twice, refused once, then down for longer than the retries.
    fake_ls.import_faults = ["pass", "lost", "pass", "fail", "lost", "pass", "fail", "fail", "fail"]
    run = score_now(project)
    assert run.status == ScoringRun.Status.FAILED and "503" in run.error
    assert 0 < run.cursor < 2500 and ScoringPool.objects.get(run=run).size == 2500  # kept for the resume
    # The head of the queue already sorts by the new tag; the tasks not pushed yet sort last.
    assert fake_ls.project["model_version"] == run.tag
    assert set(fake_ls.tags_per_unlabeled_task(run.tag)) <= {0, 1}  # nothing doubled so far

    rerun = runs.request_scoring(project, trigger="manual", enqueue=False)
    assert rerun.pk == run.pk  # the failed run resumes under its tag
    reads = fake_ls.reads
    job.run_scoring(rerun.pk)
    assert fake_ls.reads == reads + 1  # the stored pool, not a second scoring; one look for newer tasks
    rerun.refresh_from_db()
    assert rerun.status == ScoringRun.Status.SUCCEEDED and rerun.attempts == 2
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}
    assert fake_ls.project["model_version"] == run.tag


@pytest.mark.parametrize("batch_by_batch", [False, True], ids=["default-import", "memory-efficient-import"])
def test_tasks_deleted_during_the_push_are_skipped_and_the_rest_get_exactly_one(trained_sms_project, fake_ls,
                                                                                queued_runs, batch_by_batch):
    project, version = trained_sms_project
    ScoringPolicy.objects.filter(project=project).update(chunk_size=2000)
    fake_ls.batch_by_batch = batch_by_batch
    gone: list[int] = []

    def delete_tasks_of_later_chunks():  # after the first import: tasks the next chunks hold
        if not gone:
            ours = {p["task"] for p in fake_ls.predictions}
            gone.extend(sorted(set(fake_ls.texts) - ours)[::97])
            for task in gone:
                del fake_ls.texts[task]

    fake_ls.on_import = delete_tasks_of_later_chunks
    run = score_now(project)
    assert run.status == ScoringRun.Status.SUCCEEDED, run.error
    assert len(gone) == 21 and fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500 - len(gone)}
    assert not {p["task"] for p in fake_ls.predictions} & set(gone)


class WorkerKilled(BaseException):
    """Stands for SIGKILL: nothing in the job catches it."""


def test_an_import_that_lands_after_its_timeout_is_waited_for_not_sent_twice(trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project
    fake_ls.import_faults = ["pass", "late"]
    run = score_now(project)
    assert run.status == ScoringRun.Status.SUCCEEDED
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}
    assert fake_ls.verified == 0 and fake_ls.imports == 3  # the count settled at "all landed": nothing resent


def test_a_chunk_sent_by_a_worker_that_died_is_checked_before_anything_is_sent_again(trained_sms_project, fake_ls,
                                                                                       queued_runs):
    project, version = trained_sms_project
    ScoringPolicy.objects.filter(project=project).update(chunk_size=1000)  # chunks: 500, 1000, 1000
    run = runs.request_scoring(project, trigger="manual", enqueue=False)

    def die_during_the_second_chunk():
        if fake_ls.imports == 2:  # Label Studio had stored 400 of its 1,000 when the worker died
            del fake_ls.predictions[-600:]
            raise WorkerKilled()

    fake_ls.on_import = die_during_the_second_chunk
    with pytest.raises(WorkerKilled):
        job.run_scoring(run.pk)
    run.refresh_from_db()
    assert (run.status, run.cursor, run.inflight_through, run.done) == (ScoringRun.Status.RUNNING, 500, 1500, 500)

    fake_ls.on_import = None
    job.run_scoring(run.pk)  # the redelivered message
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.SUCCEEDED and run.done == 2500
    assert fake_ls.verified == 1000  # the unconfirmed chunk's tasks, by id
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}
    assert fake_ls.imports == 4  # the 600 missing, then the last 1,000


def test_tasks_created_while_the_pool_is_pushed_are_scored_by_the_same_run(trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project

    def import_more_tasks():
        if fake_ls.imports == 1:
            fake_ls.texts.update({i: f"free entry {i}: text WIN to claim your prize" for i in range(2501, 2521)})

    fake_ls.on_import = import_more_tasks
    run = score_now(project)
    assert run.status == ScoringRun.Status.SUCCEEDED and run.done == run.total == 2520 and run.high_water == 2520
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2520}


@pytest.mark.parametrize("history, after, fixed", [
    # As on a 100k-task project: Label Studio's fixed work per import dominates and grows as
    # predictions accumulate. Halving would only add requests: the chunk grows to the most,
    # and the run says how to make Label Studio's imports cheaper.
    ([(500, 7.9), (1000, 11.7), (2000, 12.9), (4000, 22.6), (4000, 28.5), (5000, 36.0)], 5000, 30.0),
    # The predictions themselves are slow (6 ms each): halve, nothing to say about Label Studio.
    ([(500, 3.0), (1000, 6.0), (2000, 12.0), (4000, 24.0), (4000, 27.0)], 2000, None),
])
def test_slow_imports_shrink_the_chunk_only_when_its_predictions_make_them_slow(history, after, fixed, caplog):
    from orchestrator.learning.scoring.context import RunContext
    from orchestrator.learning.timings import PhaseTimer

    pure = ChunkSizer(largest=5000, chunk=500)
    costs = [pure.adapt(size, seconds) for size, seconds in history]
    assert pure.chunk == after and (costs[-1] is None if fixed is None else costs[-1] == pytest.approx(fixed, abs=0.5))
    ctx = RunContext(run=ScoringRun(), project=None, policy=None, predictor=None, timer=PhaseTimer(),
                     sizer=ChunkSizer(largest=5000, chunk=500))
    for size, seconds in history:
        assert size == ctx.sizer.chunk
        push._note_import(ctx, size, seconds)
    assert ctx.sizer.chunk == after
    warnings = [r.getMessage() for r in caplog.records if "scoring_slow_label_studio" in r.getMessage()]
    if fixed is None:
        assert "import_fixed_cost" not in ctx.timer.totals and warnings == []
    else:
        assert ctx.timer.totals["import_fixed_cost"] == pytest.approx(fixed, abs=0.5)
        # The flag the harness's second Label Studio proves works (tests/integration/conftest.py).
        assert len(warnings) == 1 and f"{MEMORY_EFFICIENT_IMPORT}=true" in warnings[0]


def test_a_later_push_reads_its_tasks_from_the_mirror_and_covers_tasks_created_and_deleted_meanwhile(
        trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project
    first = score_now(project)
    assert first.status == ScoringRun.Status.SUCCEEDED and fake_ls.reads >= 2  # the first push read every task
    # Meanwhile, every webhook lost: 30 tasks imported, 20 deleted, 40 labeled.
    for task_id in range(2501, 2531):
        fake_ls.texts[task_id] = f"new message number {task_id}, call now to win"
    for task_id in range(100, 120):
        del fake_ls.texts[task_id]
    fake_ls.labeled = set(range(200, 240))
    reads = fake_ls.reads
    second = score_now(project)
    assert second.status == ScoringRun.Status.SUCCEEDED and second.tag != first.tag
    assert fake_ls.tags_per_unlabeled_task(second.tag) == {1: 2500 + 30 - 20 - 40}
    assert second.total == second.done == 2500 + 30 - 20 - 40
    # Task data read: the 30 new tasks (a page, then a look that finds no more), and after the pool was
    # pushed one look for tasks created meanwhile. No task listed again; the ids once (a count differed).
    assert fake_ls.reads == reads + 3 and fake_ls.id_listings == 1
    assert "mirror" in second.timings and "read" in second.timings


def test_the_audit_sample_sorts_at_every_tenth_place_of_label_studio_queue_and_trains_nothing(
        trained_sms_project, fake_ls, queued_runs, settings):
    """With ALO_AUDIT_SHARE 0.1, Label Studio's order by score puts an audit task (a uniform draw, whatever the
    model thinks of it) at every tenth place; the strategy's order fills the others; once labelled, audit tasks
    go to the estimate, not to training."""
    from orchestrator.learning import audit
    from orchestrator.learning.training.dataset import examples_from_tasks
    from tests.conftest import sms_rows
    from tests.factories import ls_tasks

    settings.AUDIT_SHARE = 0.1
    project, version = trained_sms_project
    run = score_now(project)
    assert run.status == ScoringRun.Status.SUCCEEDED
    ours = sorted((p for p in fake_ls.predictions if p["model_version"] == run.tag), key=lambda p: (p["score"], p["task"]))
    tasks = [p["task"] for p in ours]
    audited = audit.is_audit(project.ls_project_id, tasks)
    assert 0.07 < audited.mean() < 0.13
    scores = np.array([p["score"] for p in ours])
    # The j-th audit task's place among Label Studio's ascending scores (a range where scores tie: duplicate texts).
    places = [(np.count_nonzero(scores < scores[i]), np.count_nonzero(scores <= scores[i]) - 1)
              for i in np.flatnonzero(audited)[:150]]
    assert all(first <= 10 * j + 9 <= last for j, (first, last) in enumerate(places)), places[:20]
    draws = audit.draws(project.ls_project_id, tasks)
    assert np.all(np.diff(draws[audited][:150]) > 0)  # audit tasks lowest draw first: a uniform sample at any depth
    others = [p for p, a in zip(ours, audited) if not a]
    model = model_cache.load(version.model_uri, backend_for(project.label_config))
    confidence = model.predict_proba([fake_ls.texts[p["task"]] for p in others[:200]]).max(axis=1)
    assert np.all(np.diff(confidence) >= -1e-6)  # the strategy's own order between them

    # Labelled, the queue's first 100 places: ten audit labels held out of the training examples.
    rows = dict(zip(range(1, 2501), sms_rows(2500, path=__import__("tests.conftest").conftest.SMS_POOL)))
    labelled = ls_tasks([rows[t] for t in tasks[:100]])
    for task, t in zip(labelled, tasks[:100]):
        task["id"] = t
    dataset = examples_from_tasks(backend_for(project.label_config), labelled,
                                  audit_of=lambda ids: audit.is_audit(project.ls_project_id, ids))
    assert (len(dataset.examples), len(dataset.audit)) == (90, 10)
    assert [e.text for e in dataset.audit] == [rows[t][1] for t, a in zip(tasks[:100], audited[:100]) if a]
