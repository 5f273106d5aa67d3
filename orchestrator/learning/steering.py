"""An operator's steering of a project: its strategy (re-scores the queue) and its re-scoring
schedule (a django-celery-beat periodic task), each checked before anything is saved."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

import strategies
from backends import backend_for
from orchestrator import jobs
from orchestrator.gateways import label_studio
from orchestrator.learning.models import Project, ScoringRun
from orchestrator.learning.scoring import runs

logger = logging.getLogger(__name__)


class SettingError(ValueError):
    """A strategy, its options or a schedule that cannot work; the message says what is accepted."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


# --- strategy ----------------------------------------------------------------------------------------
def check_strategy(project: Project, strategy: str, params: Any) -> dict[str, Any]:
    """The options to store if `strategy` with `params` can score `project`; SettingError otherwise."""
    if strategy not in strategies.names():
        raise SettingError(f"unknown strategy {strategy!r}; known: {', '.join(strategies.names())}", "strategy")
    params = {} if params in (None, "") else params
    if not isinstance(params, dict):
        raise SettingError(f"strategy options must be a JSON object, e.g. {{\"candidates\": 500}}; got "
                           f"{type(params).__name__}", "strategy_params")
    multilabel = project_multilabel(project)
    kind = strategies.get(strategy).kind
    if kind != "any" and (kind == "multi_label") != multilabel:
        fits = ", ".join(strategies.names("multi_label" if multilabel else "single_label"))
        raise SettingError(f"{strategy} is a {kind.replace('_', '-')} strategy and this project is "
                           f"{'multi' if multilabel else 'single'}-label; strategies that fit it: {fits}", "strategy")
    try:
        strategies.check_options(strategy, params, multilabel=multilabel)
    except ValueError as error:
        takes = strategies.option_names(strategy)
        raise SettingError(f"{error} ({strategy} takes {', '.join(takes) if takes else 'no options'})",
                           "strategy_params") from None
    return params


def project_multilabel(project: Project) -> bool:
    try:
        return backend_for(project.label_config).multiple
    except ValueError:  # a config the service never accepted: judge no strategy by it
        return False


@dataclass(frozen=True)
class StrategyChange:
    project: Project
    changed: bool
    scoring_run: ScoringRun | None

    def describe(self) -> str:
        if not self.changed:
            return f"{self.project}: strategy stays {self.project.strategy}"
        what = f"{self.project}: strategy is now {self.project.strategy}"
        if self.scoring_run is not None:
            return f"{what}; scoring run {self.scoring_run.pk} re-scores the queue ({self.scoring_run.tag})"
        if self.project.usable_serving_version() is None:
            return f"{what}; it scores from the first model on (the cold start's order does not depend on it)"
        return f"{what}; LABEL_STUDIO_URL is unset, so the queue is re-scored by the next push only"


def change_strategy(project: Project, *, strategy: str, params: Any = None, rescore: bool = True) -> StrategyChange:
    """Set the project's strategy and options; with `rescore`, push the serving version's scores
    under the new strategy (before a model there is nothing to re-score)."""
    params = check_strategy(project, strategy, params)
    changed = (project.strategy, project.strategy_params or {}) != (strategy, params)
    if changed:
        project.strategy, project.strategy_params = strategy, params
        project.save(update_fields=["strategy", "strategy_params", "updated_at"])
        logger.info("strategy_changed project=%s strategy=%s params=%s", project.ls_project_id, strategy, params)
    run = None
    if changed and rescore and project.usable_serving_version() is not None and label_studio.is_configured():
        run = runs.request_scoring(project, trigger="strategy")
    return StrategyChange(project, changed, run)


# --- schedule ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """A project's re-scoring schedule: off, every N hours, or a crontab (UTC)."""

    kind: str  # "off", "hours" or "crontab"
    every_hours: float | None = None
    crontab: str = ""
    enabled: bool = True

    def describe(self) -> str:
        if self.kind == "off":
            return "off"
        when = (f"every {self.every_hours:g} hour{'s' if self.every_hours != 1 else ''}" if self.kind == "hours"
                else f"crontab {self.crontab} (UTC)")
        return when if self.enabled else f"{when}, paused"


def schedule_task_name(ls_project_id: int) -> str:
    return f"re-score project {ls_project_id}"


def schedule_of(project: Project) -> Schedule:
    task = (PeriodicTask.objects.select_related("interval", "crontab")
            .filter(name=schedule_task_name(project.ls_project_id)).first())
    if task is None:
        return Schedule("off")
    if task.interval is not None:
        seconds = task.interval.every * {IntervalSchedule.DAYS: 86400, IntervalSchedule.HOURS: 3600,
                                         IntervalSchedule.MINUTES: 60, IntervalSchedule.SECONDS: 1,
                                         IntervalSchedule.MICROSECONDS: 1e-6}[task.interval.period]
        return Schedule("hours", every_hours=round(seconds / 3600, 4), enabled=task.enabled)
    if task.crontab is not None:
        c = task.crontab
        return Schedule("crontab", crontab=" ".join([c.minute, c.hour, c.day_of_month, c.month_of_year,
                                                     c.day_of_week]), enabled=task.enabled)
    return Schedule("off")


def parse_schedule(*, kind: str, every_hours: Any = None, crontab: str = "") -> Schedule:
    """A schedule from what a form or the API sent; SettingError names the field and what it accepts."""
    if kind == "off":
        return Schedule("off")
    if kind == "hours":
        try:
            hours = float(every_hours)
        except (TypeError, ValueError):
            raise SettingError(f"every_hours must be a number of hours, got {every_hours!r}", "every_hours") from None
        if not 1 / 60 <= hours <= 24 * 366:
            raise SettingError(f"every_hours must be between 1/60 (a minute) and 8784 (a year), got {hours:g}",
                               "every_hours")
        return Schedule("hours", every_hours=hours)
    if kind == "crontab":
        parts = (crontab or "").split()
        if len(parts) != 5:
            raise SettingError(f'a crontab has five fields, "minute hour day-of-month month day-of-week" '
                               f'(e.g. "0 2 * * *": 02:00 UTC every day); got {crontab!r}', "crontab")
        try:
            from celery.schedules import crontab as celery_crontab

            celery_crontab(*parts)
        except Exception as error:  # celery's own parser says which field is wrong
            raise SettingError(f"crontab {crontab!r} is not valid: {error}", "crontab") from None
        return Schedule("crontab", crontab=" ".join(parts))
    raise SettingError(f"schedule must be off, hours or crontab; got {kind!r}", "kind")


def set_schedule(project: Project, schedule: Schedule) -> Schedule:
    """Store the project's schedule as its django-celery-beat periodic task (beat picks it up)."""
    name = schedule_task_name(project.ls_project_id)
    with transaction.atomic():
        if schedule.kind == "off":
            PeriodicTask.objects.filter(name=name).delete()
        else:
            fields: dict[str, Any] = {"task": jobs.RESCORE_PROJECT, "args": json.dumps([project.ls_project_id]),
                                      "enabled": schedule.enabled, "interval": None, "crontab": None,
                                      "description": f"Re-score the unlabeled tasks of {project} ({schedule.describe()})"}
            if schedule.kind == "hours":
                seconds = max(1, round(schedule.every_hours * 3600))
                fields["interval"], _ = IntervalSchedule.objects.get_or_create(every=seconds,
                                                                               period=IntervalSchedule.SECONDS)
            else:
                minute, hour, day, month, weekday = schedule.crontab.split()
                fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
                    minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday,
                    timezone="UTC")
            PeriodicTask.objects.update_or_create(name=name, defaults=fields)
    logger.info("schedule_changed project=%s schedule=%s", project.ls_project_id, schedule.describe())
    return schedule_of(project)
