"""Before any model: the cold start's diversity order pushed to every unlabeled task, and /predict answering alike."""
from __future__ import annotations

import numpy as np
import orjson

from backends import features
from orchestrator.learning import predictions
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.models import COLD_START_VERSION, ColdStart, Project, ScoringRun
from orchestrator.learning.scoring import job, runs
from orchestrator.learning.training.fit import train_model_version
from strategies.cold_start import CLUSTERS, ColdStartOrder
from tests.conftest import SMS_CONFIG, SMS_POOL, sms_rows
from tests.factories import examples
from tests.learning.scoring.helpers import score_now


def pushed(fake_ls, tag):
    """{task id: score} of the predictions of one tag."""
    return {p["task"]: p["score"] for p in fake_ls.predictions if p["model_version"] == tag}


def test_without_a_model_the_push_orders_every_task_by_the_cold_start(sms_project, fake_ls, queued_runs):
    run = score_now(sms_project)
    assert run.status == ScoringRun.Status.SUCCEEDED and run.tag == COLD_START_VERSION and run.model_version is None
    assert fake_ls.tags_per_unlabeled_task(COLD_START_VERSION) == {1: 2500}
    assert fake_ls.project["model_version"] == COLD_START_VERSION  # the Data Manager sorts by it
    assert all(p["result"] == [] for p in fake_ls.predictions)  # a score, no guessed label

    stored = ColdStart.objects.get(project=sms_project)
    assert (stored.num_tasks, stored.vectors) == (2500, features.COLD_START_VECTORS)
    assert CLUSTERS - 3 <= stored.clusters <= CLUSTERS  # centres left without a member are dropped
    order = ColdStartOrder.loads(stored.data)
    scores = pushed(fake_ls, COLD_START_VERSION)
    head = sorted(scores, key=lambda task: (scores[task], task))[:stored.clusters]
    clusters, _ = order.place(features.cold_start_vectors([fake_ls.texts[t] for t in head]))
    assert len(set(clusters.tolist())) == stored.clusters  # the first tasks: one per cluster

    # Texts that repeat another's words ("Ok lar..." / "ok lar"): copies go after every other task.
    by_words = {}
    for task in sorted(scores):
        by_words.setdefault(tuple(features.TOKEN.findall(fake_ls.texts[task].lower())), []).append(task)
    copies = [task for tasks in by_words.values() for task in tasks[1:]]
    assert len(copies) >= 5
    assert min(scores[t] for t in copies) > max(s for t, s in scores.items() if t not in set(copies)) - 1e-3


def test_predict_before_a_model_scores_a_task_as_the_push_did(sms_project, fake_ls, queued_runs):
    model_cache.clear()
    some = [{"id": task, "data": {"text": fake_ls.texts[task]}} for task in (3, 17, 400, 1999)]
    before = predictions.predict(predictor=model_cache.predictor(sms_project.ls_project_id), tasks=some)
    score_now(sms_project)
    model_cache.clear()
    answered = predictions.predict(predictor=model_cache.predictor(sms_project.ls_project_id), tasks=some)
    scores = pushed(fake_ls, COLD_START_VERSION)
    assert [a["score"] for a in answered] == [scores[t["id"]] for t in some]
    assert all(a["model_version"] == COLD_START_VERSION and a["result"] == [] for a in answered)
    assert [a["score"] for a in before] != [a["score"] for a in answered]  # before the push: stable random


def test_new_tasks_before_a_model_are_placed_by_the_stored_order_not_a_new_one(sms_project, fake_ls, queued_runs):
    score_now(sms_project)
    fitted = ColdStart.objects.get(project=sms_project)
    more = [text for _, text in sms_rows(2520, path=SMS_POOL)[2500:]]  # texts the order was not fitted on
    fake_ls.texts.update({2501 + i: text for i, text in enumerate(more)})
    incremental = score_now(sms_project, mode=ScoringRun.Mode.INCREMENTAL)
    assert incremental.tag == COLD_START_VERSION and incremental.done == 20
    assert ColdStart.objects.get(project=sms_project).fitted_at == fitted.fitted_at
    order = ColdStartOrder.loads(fitted.data)
    scores = pushed(fake_ls, COLD_START_VERSION)
    expected = order.scores(features.cold_start_vectors([fake_ls.texts[i] for i in range(2501, 2521)]))
    assert np.allclose([scores[i] for i in range(2501, 2521)], expected, atol=1e-6)
    assert fake_ls.tags_per_unlabeled_task(COLD_START_VERSION) == {1: 2520}


def test_the_first_model_takes_over_and_the_cold_start_tag_is_deleted(sms_project, fake_ls, queued_runs):
    score_now(sms_project)
    version = train_model_version(project=sms_project, examples=examples(sms_rows(400)))  # promoted: a push
    run = ScoringRun.objects.get(pk=queued_runs[-1])
    assert run.model_version == version and run.tag == version.version
    job.run_scoring(run.pk)
    assert fake_ls.project["model_version"] == version.version
    assert fake_ls.model_versions(0) == {version.version: 2500}  # cold-start predictions cleaned up
    sms_project.refresh_from_db()
    assert runs.request_cold_start(sms_project) is None  # a model serves: nothing to do


def test_a_queued_cold_start_run_stops_once_a_model_serves(sms_project, fake_ls, queued_runs):
    cold = runs.request_scoring(sms_project, trigger="manual", enqueue=False)
    train_model_version(project=sms_project, examples=examples(sms_rows(400)))
    cold.refresh_from_db()
    assert cold.status == ScoringRun.Status.SUPERSEDED  # the version's push request superseded it
    ScoringRun.objects.filter(pk=cold.pk).update(status=ScoringRun.Status.QUEUED)  # a message in flight
    assert job.run_scoring(cold.pk) == ScoringRun.Status.SUPERSEDED
    assert COLD_START_VERSION not in fake_ls.model_versions(0)


def test_connecting_a_project_asks_for_one_cold_start_push(db, client, fake_ls, queued_runs):
    body = {"project": "31.1717171717", "schema": SMS_CONFIG, "hostname": "http://localhost:8080"}
    for _ in range(3):
        answer = client.post("/setup", data=orjson.dumps(body), content_type="application/json")
        assert answer.status_code == 200 and answer.json()["model_version"] == COLD_START_VERSION
    project = Project.objects.get(ls_project_id=31)
    cold = ScoringRun.objects.get(project=project)
    assert queued_runs == [cold.pk] and cold.trigger == "connect" and cold.tag == COLD_START_VERSION


def test_no_cold_start_push_when_automatic_pushes_are_off(db, client, fake_ls, queued_runs):
    body = {"project": "32.1717171717", "schema": SMS_CONFIG, "extra_params": {"scoring": {"auto_push": False}}}
    assert client.post("/setup", data=orjson.dumps(body), content_type="application/json").status_code == 200
    assert queued_runs == [] and not ScoringRun.objects.filter(project__ls_project_id=32).exists()


def test_a_cluster_of_two_gives_one_task_to_the_head_and_copies_go_last():
    from orchestrator.learning.scoring.pool import _one_per_place
    from strategies.cold_start import fit_cold_start

    rng = np.random.default_rng(0)
    big = np.array([1.0, 0.0, 0.0]) + 0.05 * rng.standard_normal((50, 3))
    pair = np.array([[0.0, 1.0, 0.1], [0.0, 1.0, -0.1]])  # both exactly as far from their centre
    copy = big[:1]  # the same words as the first task
    vectors = np.vstack([big, pair, copy]).astype(np.float32)
    order = fit_cold_start(vectors, clusters=2)
    priorities = _one_per_place(order, vectors)
    ranked = np.argsort(-priorities, kind="stable")
    assert sorted(ranked[:2].tolist())[1] == 50  # the big cluster's centre and the first of the pair
    assert set(ranked[-2:].tolist()) == {51, 52}  # the pair's second and the copy: after every other task
