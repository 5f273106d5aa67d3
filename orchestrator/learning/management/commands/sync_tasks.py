"""`manage.py sync_tasks`: bring a project's task mirror up to Label Studio now."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orchestrator.gateways import label_studio
from orchestrator.learning import task_mirror
from orchestrator.learning.models import Project


class Command(BaseCommand):
    help = ("Read a project's tasks from Label Studio into the service's task mirror (what a push scores): the "
            "tasks created and deleted since the last check, or every task with --full, e.g. after task data "
            "was edited in Label Studio (under the project's scoring lease).")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Label Studio project id.")
        parser.add_argument("--full", action="store_true", help="Read every task again.")

    def handle(self, *args, project: int, full: bool, **options):
        row = Project.objects.filter(ls_project_id=project).first()
        if row is None:
            raise CommandError(f"project {project} is unknown: connect it in Label Studio first (it calls /setup)")
        if not label_studio.is_configured():
            raise CommandError("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set to read tasks")
        outcome = task_mirror.sync_now(row.pk, full=full)
        if outcome.startswith("failed") or outcome.startswith("a push holds"):
            raise CommandError(outcome)
        self.stdout.write(f"project {project}: {outcome}; the mirror holds {task_mirror.counts(row)['tasks']} tasks")
