"""`manage.py schedule_scoring`: re-score a project on a schedule (a django-celery-beat periodic task).

The periodic task is an ordinary django-celery-beat row: the admin lists and edits it under
"Periodic tasks" (interval, crontab, enabled), and Celery beat picks changes up.
"""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from orchestrator import jobs
from orchestrator.learning.models import Project


def task_name(ls_project_id: int) -> str:
    return f"re-score project {ls_project_id}"


class Command(BaseCommand):
    help = "Re-score a project's unlabeled tasks on a schedule, or stop doing so."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Label Studio project id.")
        when = parser.add_mutually_exclusive_group(required=True)
        when.add_argument("--every-minutes", type=float, help="Run every N minutes.")
        when.add_argument("--crontab", help='Five cron fields, e.g. "0 2 * * *" for 02:00 every day (UTC).')
        when.add_argument("--off", action="store_true", help="Remove the schedule.")

    def handle(self, *args, project: int, every_minutes: float | None, crontab: str | None, off: bool, **options):
        if not Project.objects.filter(ls_project_id=project).exists():
            raise CommandError(f"project {project} is unknown: connect it in Label Studio first (it calls /setup)")
        name = task_name(project)
        if off:
            deleted, _ = PeriodicTask.objects.filter(name=name).delete()
            self.stdout.write(f"{name}: {'removed' if deleted else 'was not scheduled'}")
            return
        fields = {"task": jobs.RESCORE_PROJECT, "args": json.dumps([project]), "enabled": True,
                  "interval": None, "crontab": None}
        if every_minutes is not None:
            if every_minutes <= 0:
                raise CommandError("--every-minutes must be positive")
            seconds = max(1, round(every_minutes * 60))
            fields["interval"], _ = IntervalSchedule.objects.get_or_create(every=seconds,
                                                                           period=IntervalSchedule.SECONDS)
        else:
            parts = crontab.split()
            if len(parts) != 5:
                raise CommandError(f'--crontab needs five fields ("minute hour day month weekday"), got {crontab!r}')
            minute, hour, day, month, weekday = parts
            fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
                minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday)
        PeriodicTask.objects.update_or_create(name=name, defaults=fields)
        self.stdout.write(f"{name}: {'every ' + str(every_minutes) + ' min' if every_minutes else crontab}")
