"""The push loop in process, against an in-memory Label Studio that can lose answers and go down.

The real server, worker and broker are exercised in tests/integration/test_scoring_e2e.py.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
import pytest

import strategies
from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning.models import ScoringPolicy, ScoringPool, ScoringRun
from orchestrator.learning.scoring import cleanup, job, push, runs
from orchestrator.learning.scoring.chunks import ChunkSizer
from orchestrator.learning.model_cache import model_cache
from backends import backend_for
from orchestrator.learning.training.fit import train_model_version
from tests.conftest import SMS_POOL, sms_rows
from tests.support.label_studio import MEMORY_EFFICIENT_IMPORT


@dataclass
class FakeLabelStudio:
    """The slice of Label Studio's API the scoring job uses, with the same semantics."""

    texts: dict[int, str]
    labeled: set[int] = field(default_factory=set)
    predictions: list[dict] = field(default_factory=list)
    project: dict = field(default_factory=lambda: {"model_version": "AL orchestrator", "sampling": "Sequential sampling"})
    views: list[dict] = field(default_factory=list)
    import_faults: list[str] = field(default_factory=list)  # per import call: pass | lost | fail
    imports: int = 0
    late: list = field(default_factory=list)
    counted: int = 0  # model_versions calls
    reads: int = 0
    verified: int = 0
    on_import: object = None
    project_at_import: list = field(default_factory=list)  # the project's model_version as each import began
    # Label Studio's memory-efficient import (a feature flag) stores batches of 500 one after
    # the other and fails at the first batch naming a task gone from the project, keeping the
    # batches before it; the default import checks every task first and stores nothing.
    batch_by_batch: bool = False

    def unlabeled_tasks(self, ls_project_id, *, after_id, limit=1000, include="id,data"):
        ids = sorted(i for i in self.texts if i not in self.labeled and i > after_id)
        self.reads += 1
        return [{"id": i, "data": {"text": self.texts[i]}} for i in ids[:limit]], len(ids)

    def prediction_versions(self, ls_project_id, task_ids, batch=500):
        self.verified += len(task_ids)
        wanted = {i for i in task_ids if i in self.texts and i not in self.labeled}
        return {i: [p["model_version"] for p in self.predictions if p["task"] == i] for i in sorted(wanted)}

    def import_predictions(self, ls_project_id, predictions):
        self.imports += 1
        self.project_at_import.append(self.project["model_version"])
        fault = self.import_faults.pop(0) if self.import_faults else "pass"
        if fault == "fail":
            raise label_studio.LabelStudioError("POST import/predictions answered 503", status_code=503)
        if fault == "late":  # the client gave up; Label Studio applies the import a moment later
            self.late = [dict(p) for p in predictions]
            raise label_studio.LabelStudioError("POST import/predictions failed: timed out")
        batch = 500 if self.batch_by_batch else max(1, len(predictions))
        for start in range(0, len(predictions), batch):
            part = predictions[start:start + batch]
            unknown = [p["task"] for p in part if p["task"] not in self.texts]
            if unknown:
                raise label_studio.LabelStudioError(f"tasks {unknown} are not in the project", status_code=400)
            self.predictions += [dict(p) for p in part]
        if self.on_import:
            self.on_import()
        if fault == "lost":
            raise label_studio.LabelStudioError("POST import/predictions failed: timed out")
        return len(predictions)

    def model_versions(self, ls_project_id):
        self.counted += 1
        counts = dict(collections.Counter(p["model_version"] for p in self.predictions))
        if self.late:  # seen once without the late import, then it lands
            self.predictions += self.late
            self.late = []
        return counts

    def delete_model_version(self, ls_project_id, version, timeout=None):
        before = len(self.predictions)
        self.predictions = [p for p in self.predictions if p["model_version"] != version]
        return before - len(self.predictions)

    def get_project(self, ls_project_id):
        return dict(self.project)

    def update_project(self, ls_project_id, **fields):
        if "model_version" in fields and not any(p["model_version"] == fields["model_version"]
                                                 for p in self.predictions):
            raise label_studio.LabelStudioError("model_version: no predictions of it", status_code=400)
        self.project.update(fields)
        return dict(self.project)

    def list_views(self, ls_project_id):
        return [dict(v) for v in self.views]

    def save_view(self, ls_project_id, data, view_id=None):
        if view_id is None:
            self.views.append({"id": len(self.views) + 1, "project": ls_project_id, "data": data})
            return self.views[-1]
        view = next(v for v in self.views if v["id"] == view_id)
        view["data"] = data
        return view

    def labeled_tasks(self, ls_project_id, *, limit, include="id,data"):
        ids = sorted(self.labeled, reverse=True)[:limit]
        return [{"id": i, "data": {"text": self.texts[i]}} for i in ids]

    # --- what the tests check
    def tags_per_unlabeled_task(self, tag: str) -> collections.Counter:
        counts = collections.Counter(p["task"] for p in self.predictions if p["model_version"] == tag)
        return collections.Counter(counts[i] for i in self.texts if i not in self.labeled)


@pytest.fixture
def fake_ls(monkeypatch, settings):
    rows = sms_rows(2500, path=SMS_POOL)
    fake = FakeLabelStudio(texts={i + 1: text for i, (_, text) in enumerate(rows)})
    monkeypatch.setattr(label_studio, "is_configured", lambda: True)
    for name in ("unlabeled_tasks", "prediction_versions", "import_predictions", "model_versions",
                 "delete_model_version", "get_project", "update_project", "list_views", "save_view",
                 "labeled_tasks"):
        monkeypatch.setattr(label_studio, name, getattr(fake, name))
    settings.LABEL_STUDIO_RETRY_BACKOFF = 0.0
    settings.LABEL_STUDIO_RETRIES = 3
    monkeypatch.setattr(push, "SETTLE_SECONDS", 0.0)
    return fake


@pytest.fixture
def queued(jobs_sent):
    """Scoring runs sent to the broker (their pks)."""
    # The clean-up of old tags runs at once here (a task of its own in the worker).
    jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS] = cleanup.clean_up
    return jobs_sent.watch(jobs.RUN_SCORING)


def score_now(project, **kwargs) -> ScoringRun:
    run = runs.request_scoring(project, trigger="manual", enqueue=False, **kwargs)
    job.run_scoring(run.pk)
    run.refresh_from_db()
    return run


def test_a_full_run_gives_every_unlabeled_task_one_prediction_and_makes_label_studio_sort_by_it(
        trained_sms_project, fake_ls, queued):
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
    # Ascending score is descending least-confidence priority, from the served model's probabilities.
    ours = sorted((p for p in fake_ls.predictions if p["model_version"] == run.tag), key=lambda p: p["task"])
    model = project.serving_version and model_cache.load(version.model_uri, backend_for(project.label_config))
    probabilities = model.predict_proba([fake_ls.texts[p["task"]] for p in ours])
    expected = 1 - strategies.priorities("least_confidence", probabilities=probabilities)
    assert np.allclose([p["score"] for p in ours], expected, atol=1e-6)
    assert ours[0]["result"][0]["value"]["choices"][0] in {"ham", "spam"}


def test_lost_answers_and_an_outage_end_with_exactly_one_prediction_after_the_rerun(trained_sms_project, fake_ls,
                                                                                      queued, monkeypatch):
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
                                                                                queued, batch_by_batch):
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


def test_an_import_that_lands_after_its_timeout_is_waited_for_not_sent_twice(trained_sms_project, fake_ls, queued):
    project, version = trained_sms_project
    fake_ls.import_faults = ["pass", "late"]
    run = score_now(project)
    assert run.status == ScoringRun.Status.SUCCEEDED
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}
    assert fake_ls.verified == 0 and fake_ls.imports == 3  # the count settled at "all landed": nothing resent


def test_a_chunk_sent_by_a_worker_that_died_is_checked_before_anything_is_sent_again(trained_sms_project, fake_ls,
                                                                                       queued):
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


def test_a_new_version_supersedes_the_running_push_and_removes_its_partial_tag(trained_sms_project, fake_ls, queued):
    project, v1 = trained_sms_project
    first = score_now(project)
    assert fake_ls.project["model_version"] == v1.version

    examples = [scoring_example(label, text) for label, text in sms_rows(500)]
    v2 = train_model_version(project=project, examples=examples)  # promoted: asks for a push of v2
    project.refresh_from_db()
    assert queued and ScoringRun.objects.get(pk=queued[-1]).tag == v2.version
    stale = ScoringRun.objects.create(project=project, model_version=v1, tag=f"{v1.version}.2", strategy="least_confidence",
                                      trigger="schedule", status=ScoringRun.Status.QUEUED)
    assert job.run_scoring(stale.pk) == ScoringRun.Status.SUPERSEDED

    # While v2's push runs, v3 is promoted: v2's run stops after its chunk and its predictions go.
    v2_run = ScoringRun.objects.get(pk=queued[-1])

    def promote_v3():
        if not fake_ls.on_import.done:
            fake_ls.on_import.done = True
            train_model_version(project=project, examples=examples[:450])

    promote_v3.done = False
    fake_ls.on_import = promote_v3
    assert job.run_scoring(v2_run.pk) == ScoringRun.Status.SUPERSEDED
    assert v2.version not in fake_ls.model_versions(0)
    assert fake_ls.project["model_version"] == v1.version  # the last complete push keeps ordering the queue

    fake_ls.on_import = None
    v3_run = ScoringRun.objects.get(pk=queued[-1])
    job.run_scoring(v3_run.pk)
    assert fake_ls.model_versions(0) == {v3_run.tag: 2500}  # v1's predictions deleted after the switch
    assert first.tag != v3_run.tag and fake_ls.project["model_version"] == v3_run.tag


def scoring_example(label, text):
    from backends import Example

    return Example(text=text, labels=(label,))


def test_new_tasks_get_the_current_tag_and_the_schedule_only_rescores_what_can_change(trained_sms_project, fake_ls,
                                                                                        queued):
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


def test_new_tasks_after_a_rescoring_failed_midway_resume_it_under_its_tag(trained_sms_project, fake_ls, queued):
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


def test_tasks_created_while_the_pool_is_pushed_are_scored_by_the_same_run(trained_sms_project, fake_ls, queued):
    project, version = trained_sms_project

    def import_more_tasks():
        if fake_ls.imports == 1:
            fake_ls.texts.update({i: f"free entry {i}: text WIN to claim your prize" for i in range(2501, 2521)})

    fake_ls.on_import = import_more_tasks
    run = score_now(project)
    assert run.status == ScoringRun.Status.SUCCEEDED and run.done == run.total == 2520 and run.high_water == 2520
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2520}


def test_tasks_created_queues_one_incremental_run_for_a_burst(trained_sms_project, fake_ls, queued, client):
    project, version = trained_sms_project
    score_now(project)
    body = {"action": "TASKS_CREATED", "project": {"id": project.ls_project_id}, "tasks": [{"id": 2501}]}
    for _ in range(5):
        assert client.post("/webhook", data=body, content_type="application/json").status_code == 201
    incremental = ScoringRun.objects.filter(project=project, mode=ScoringRun.Mode.INCREMENTAL)
    assert incremental.count() == 1 and queued == [incremental.get().pk]


def test_nothing_is_pushed_without_a_trained_version(sms_project, fake_ls, queued):
    assert runs.request_scoring(sms_project, trigger="manual") is None
    assert fake_ls.imports == 0 and queued == []


def test_queue_view_is_created_once_and_repaired_when_edited(fake_ls):
    first = label_studio.ensure_queue_view(7, "Active learning queue")
    assert label_studio.ensure_queue_view(7, "Active learning queue") == first and len(fake_ls.views) == 1
    fake_ls.views[0]["data"]["ordering"] = ["tasks:id"]
    label_studio.ensure_queue_view(7, "Active learning queue")
    assert fake_ls.views[0]["data"]["ordering"] == ["tasks:predictions_score"] and len(fake_ls.views) == 1


def test_a_slow_deletion_is_left_to_label_studio_and_checked_again(trained_sms_project, fake_ls, queued, monkeypatch,
                                                                   jobs_sent):
    project, version = trained_sms_project
    first = score_now(project)
    project.strategy = "margin"
    project.save()
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    rechecks = jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: (job.args, job.countdown))
    second = score_now(project)  # a new tag; its switch asks for the clean-up
    assert second.tag == f"{version.version}.2" and rechecks == [((project.pk, 0), 0)]
    slow = fake_ls.delete_model_version

    def timing_out(ls_project_id, tag, timeout=None):
        assert timeout == cleanup.CLEANUP_REQUEST_SECONDS
        raise label_studio.LabelStudioError("DELETE model-versions failed: timed out")

    monkeypatch.setattr(label_studio, "delete_model_version", timing_out)
    assert cleanup.clean_up(project.pk) == f"deleting ['{first.tag}']"
    assert rechecks[-1] == ((project.pk, 1), cleanup.CLEANUP_RECHECK_SECONDS)
    monkeypatch.setattr(label_studio, "delete_model_version", slow)  # Label Studio finished meanwhile
    assert cleanup.clean_up(project.pk, 1) == f"deleted ['{first.tag}']"
    assert cleanup.clean_up(project.pk, 2) == "clean"
    assert fake_ls.model_versions(0) == {second.tag: 2500}


@pytest.mark.parametrize("chunk, seconds, after", [
    (1000, 2.0, 2000), (4000, 2.0, 5000), (500, 12.0, 1000), (1000, 16.0, 1000), (1000, 28.0, 500),
    (150, 40.0, 100),
])
def test_the_chunk_grows_while_imports_are_quick_and_shrinks_when_slow(chunk, seconds, after):
    sizer = ChunkSizer(largest=5000, chunk=chunk)
    assert sizer.adapt(chunk, seconds) is None  # a single import says nothing of Label Studio's fixed cost
    assert sizer.chunk == after


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


def test_beat_resumes_a_failed_push_once_it_has_rested(trained_sms_project, fake_ls, queued):
    from datetime import timedelta

    from django.utils import timezone

    project, version = trained_sms_project
    fake_ls.import_faults = ["pass", "fail", "fail", "fail"]
    run = score_now(project)
    assert run.status == ScoringRun.Status.FAILED
    assert runs.reconcile()["scoring_resumed"] == 0  # too soon
    ScoringRun.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(minutes=10))
    assert runs.reconcile()["scoring_resumed"] == 1 and queued == [run.pk]
    job.run_scoring(run.pk)
    run.refresh_from_db()
    assert run.status == ScoringRun.Status.SUCCEEDED and run.trigger == "resume"
    assert fake_ls.tags_per_unlabeled_task(run.tag) == {1: 2500}
    assert runs.reconcile()["scoring_resumed"] == 0


def test_old_tags_wait_while_a_push_runs(trained_sms_project, fake_ls, queued, jobs_sent):
    project, version = trained_sms_project
    first = score_now(project)
    fake_ls.predictions.append({"task": 1, "model_version": "p7-v0", "score": 0.5, "result": []})
    ScoringRun.objects.filter(pk=first.pk).update(tag="p7-v0")  # an older tag of ours, still present
    running = ScoringRun.objects.create(project=project, model_version=version, tag="p7-v1.9", strategy="margin",
                                        trigger="manual", status=ScoringRun.Status.RUNNING)
    del jobs_sent.run_at_once[jobs.CLEAN_UP_PREDICTIONS]
    later = jobs_sent.watch(jobs.CLEAN_UP_PREDICTIONS, lambda job: job.countdown)
    assert cleanup.clean_up(project.pk) == "after the running push" and later == [cleanup.CLEANUP_RECHECK_SECONDS]
    assert "p7-v0" in fake_ls.model_versions(0)
    ScoringRun.objects.filter(pk=running.pk).update(status=ScoringRun.Status.SUCCEEDED)
    assert cleanup.clean_up(project.pk) == "deleted ['p7-v0']"


def test_a_long_lived_worker_keeps_only_the_newest_models(monkeypatch):
    from orchestrator.learning import model_cache as model_cache_module

    monkeypatch.setattr(model_cache_module, "MODEL_CACHE_SIZE", 3)
    cache = model_cache_module.ModelCache()
    for i in range(5):
        cache.put_model(f"models:/m/{i}", object())  # trained here, or loaded by a push
    cache.put_model("models:/m/2", object())  # used again: the newest
    assert list(cache._models) == ["models:/m/3", "models:/m/4", "models:/m/2"]


def test_the_admin_action_queues_a_push_and_every_admin_page_renders(trained_sms_project, fake_ls, queued,
                                                                      admin_client):
    from django.urls import reverse

    project, version = trained_sms_project
    changelist = reverse("admin:learning_project_changelist")
    response = admin_client.post(changelist, {"action": "score_and_push", "_selected_action": [project.pk]},
                                 follow=True)
    assert response.status_code == 200
    run = ScoringRun.objects.get(project=project)
    assert (run.trigger, run.status, run.tag) == ("admin", ScoringRun.Status.QUEUED, version.version)
    assert queued == [run.pk] and f"scoring run {run.pk} (queued, {version.version})" in response.content.decode()
    job.run_scoring(run.pk)
    for name, pk in [("project", project.pk), ("scoringrun", run.pk), ("modelversion", version.pk)]:
        assert admin_client.get(reverse(f"admin:learning_{name}_changelist")).status_code == 200
        assert admin_client.get(reverse(f"admin:learning_{name}_change", args=[pk])).status_code == 200
    for name in ("trainingrun", "webhookevent"):
        assert admin_client.get(reverse(f"admin:learning_{name}_changelist")).status_code == 200


def test_the_admin_action_says_when_nothing_can_be_pushed(sms_project, fake_ls, queued, admin_client):
    from django.urls import reverse

    response = admin_client.post(reverse("admin:learning_project_changelist"),
                                 {"action": "score_and_push", "_selected_action": [sms_project.pk]}, follow=True)
    assert "no trained version serves yet" in response.content.decode()
    assert not ScoringRun.objects.exists() and queued == []


@pytest.mark.django_db(transaction=True)
def test_triggers_firing_at_the_same_moment_share_one_run(trained_sms_project, fake_ls, queued, monkeypatch):
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
    assert ScoringRun.objects.filter(project=project).count() == 1 and queued == picked[:1]


@pytest.mark.parametrize("strategy", ["consensus_entropy", "vote_entropy"])
def test_committee_strategies_score_with_the_fold_models_saved_in_mlflow(sms_project, fake_ls, queued, strategy):
    from backends import backend_for
    from orchestrator.gateways import mlflow_store
    from orchestrator.learning.model_cache import model_cache
    from orchestrator.learning.predictions import predict

    project = sms_project
    project.strategy = strategy
    project.save()
    version = train_model_version(project=project, examples=[scoring_example(label, text)
                                                             for label, text in sms_rows(400)])
    assert version.metrics["committee_size"] == 5
    # A fresh load from MLflow (not this process's cache) brings the committee along.
    backend = backend_for(project.label_config)
    loaded = backend.wrap(mlflow_store.load_pipeline(version.model_uri))
    assert len(loaded.committee) == 5

    run = score_now(project)
    ours = sorted((p for p in fake_ls.predictions if p["model_version"] == run.tag), key=lambda p: p["task"])
    texts = [fake_ls.texts[p["task"]] for p in ours]
    disagreement = strategies.priorities(strategy, committee_probabilities=loaded.committee_proba(texts))
    assert np.allclose([p["score"] for p in ours], 1 - disagreement, atol=1e-6)
    fallback = 1 - strategies.priorities("entropy", probabilities=loaded.predict_proba(texts))
    assert not np.allclose(1 - disagreement, fallback, atol=1e-3)  # not the entropy fallback

    # /predict answers with the same committee scores.
    model_cache.clear()
    predictor = model_cache.predictor(project.ls_project_id)
    answered = predict(predictor=predictor, tasks=[{"id": p["task"], "data": {"text": t}} for p, t in zip(ours[:50], texts)])
    assert np.allclose([a["score"] for a in answered], [p["score"] for p in ours[:50]], atol=1e-6)


def test_a_version_without_a_committee_scores_committee_strategies_with_entropy(trained_sms_project, fake_ls, queued):
    project, version = trained_sms_project  # trained under least_confidence: no committee kept
    project.strategy = "vote_entropy"
    project.save()
    run = score_now(project)
    ours = sorted((p for p in fake_ls.predictions if p["model_version"] == run.tag), key=lambda p: p["task"])
    model = model_cache.load(version.model_uri, backend_for(project.label_config))
    assert model.committee == ()
    probabilities = model.predict_proba([fake_ls.texts[p["task"]] for p in ours])
    assert np.allclose([p["score"] for p in ours], 1 - strategies.priorities("entropy", probabilities=probabilities),
                       atol=1e-6)
