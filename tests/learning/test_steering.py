"""Strategies and schedules as an operator sets them: checked first, then stored, then acted on."""
from __future__ import annotations

import json

import pytest
from django_celery_beat.models import PeriodicTask

from orchestrator import jobs
from orchestrator.learning import steering
from orchestrator.learning.models import ScoringRun
from tests.conftest import SMS_CONFIG


@pytest.mark.parametrize("strategy, params, field, message", [
    ("foo", {}, "strategy", "unknown strategy 'foo'; known: consensus_entropy, entropy"),
    ("multilabel_margin", {}, "strategy", "is a multi-label strategy and this project is single-label; "
                                          "strategies that fit it: consensus_entropy"),
    ("ranked_batch", {"candidates": -3}, "strategy_params", "candidates must be a positive integer, got -3 "
                                                            "(ranked_batch takes multilabel=False, candidates=2000"),
    ("ranked_batch", {"metric": "manhattan"}, "strategy_params", "metric must be one of cosine, euclidean"),
    ("margin", {"candidates": 5}, "strategy_params", "unexpected keyword argument 'candidates' (margin takes no "
                                                     "options)"),
    ("margin", [1, 2], "strategy_params", "must be a JSON object"),
])
def test_a_strategy_that_cannot_score_is_refused_naming_the_field(sms_project, strategy, params, field, message):
    with pytest.raises(steering.SettingError) as refused:
        steering.change_strategy(sms_project, strategy=strategy, params=params)
    assert refused.value.field == field and message in str(refused.value)
    sms_project.refresh_from_db()
    assert (sms_project.strategy, sms_project.strategy_params) == ("margin", {})


def test_changing_the_strategy_re_scores_the_queue_of_a_serving_model(trained_sms_project, fake_ls, queued_runs):
    project, version = trained_sms_project
    change = steering.change_strategy(project, strategy="ranked_batch", params={"candidates": 300})
    project.refresh_from_db()
    assert (project.strategy, project.strategy_params) == ("ranked_batch", {"candidates": 300})
    run = ScoringRun.objects.get(pk=queued_runs[-1])
    assert (run.strategy, run.trigger, run.model_version) == ("ranked_batch", "strategy", version)
    assert change.describe().endswith(f"scoring run {run.pk} re-scores the queue ({run.tag})")
    # The same again changes nothing and queues nothing.
    again = steering.change_strategy(project, strategy="ranked_batch", params={"candidates": 300})
    assert not again.changed and queued_runs == [run.pk]


def test_before_a_model_a_new_strategy_waits_for_it(sms_project, fake_ls, queued_runs):
    before = list(queued_runs)
    change = steering.change_strategy(sms_project, strategy="entropy")
    assert change.changed and change.scoring_run is None and queued_runs == before
    assert "the cold start's order does not depend on it" in change.describe()


def test_multi_label_projects_take_multi_label_strategies(db):
    from orchestrator.learning.projects import setup_project

    config = SMS_CONFIG.replace('<Choices name="label"', '<Choices name="label" choice="multiple"')
    assert 'choice="multiple"' in config
    project = setup_project(project_key="9.1", label_config=config)
    assert steering.change_strategy(project, strategy="multilabel_margin").changed
    with pytest.raises(steering.SettingError, match="single-label strategy and this project is multi-label"):
        steering.change_strategy(project, strategy="margin")


@pytest.mark.parametrize("given, field, message", [
    ({"kind": "hours", "every_hours": "soon"}, "every_hours", "must be a number of hours, got 'soon'"),
    ({"kind": "hours", "every_hours": 0}, "every_hours", "between 1/60 (a minute) and 8784"),
    ({"kind": "crontab", "crontab": "0 2 * *"}, "crontab", "five fields"),
    ({"kind": "crontab", "crontab": "0 25 * * *"}, "crontab", "is not valid"),
    ({"kind": "weekly"}, "kind", "must be off, hours or crontab"),
])
def test_a_schedule_that_cannot_run_is_refused(given, field, message):
    with pytest.raises(steering.SettingError) as refused:
        steering.parse_schedule(**given)
    assert refused.value.field == field and message in str(refused.value)


def test_a_schedule_is_a_periodic_task_of_the_project_and_reads_back_in_words(sms_project):
    every = steering.set_schedule(sms_project, steering.parse_schedule(kind="hours", every_hours=6))
    assert every.describe() == "every 6 hours"
    task = PeriodicTask.objects.get(name=steering.schedule_task_name(sms_project.ls_project_id))
    assert (task.task, json.loads(task.args), task.interval.every, task.crontab) == (
        jobs.RESCORE_PROJECT, [sms_project.ls_project_id], 6 * 3600, None)
    nightly = steering.set_schedule(sms_project, steering.parse_schedule(kind="crontab", crontab="0 2 * * *"))
    assert nightly.describe() == "crontab 0 2 * * * (UTC)"
    task.refresh_from_db()
    assert task.interval is None and (task.crontab.minute, task.crontab.hour) == ("0", "2")
    assert steering.set_schedule(sms_project, steering.Schedule("off")).describe() == "off"
    assert not PeriodicTask.objects.filter(name=steering.schedule_task_name(sms_project.ls_project_id)).exists()
