"""`manage.py schedule_scoring`: re-score a project on a schedule (a django-celery-beat periodic task).

The same schedule the console edits on the project's page (steering.py); Celery beat picks
changes up.
"""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orchestrator.learning.models import Project
from orchestrator.learning.steering import Schedule, SettingError, parse_schedule, set_schedule


class Command(BaseCommand):
    help = "Re-score a project's unlabeled tasks on a schedule, or stop doing so."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Label Studio project id.")
        when = parser.add_mutually_exclusive_group(required=True)
        when.add_argument("--every-minutes", type=float, help="Run every N minutes.")
        when.add_argument("--crontab", help='Five cron fields, e.g. "0 2 * * *" for 02:00 every day (UTC).')
        when.add_argument("--off", action="store_true", help="Remove the schedule.")

    def handle(self, *args, project: int, every_minutes: float | None, crontab: str | None, off: bool, **options):
        found = Project.objects.filter(ls_project_id=project).first()
        if found is None:
            raise CommandError(f"project {project} is unknown: connect it in Label Studio first (it calls /setup)")
        try:
            if off:
                schedule = Schedule("off")
            elif every_minutes is not None:
                if every_minutes <= 0:
                    raise CommandError("--every-minutes must be positive")
                schedule = Schedule("hours", every_hours=every_minutes / 60)  # below a minute: for tests
            else:
                schedule = parse_schedule(kind="crontab", crontab=crontab)
        except SettingError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"re-scoring of {found}: {set_schedule(found, schedule).describe()}")
