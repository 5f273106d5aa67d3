"""`manage.py sync_annotations`: bring a project's annotation store up to Label Studio now."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orchestrator.gateways import label_studio
from orchestrator.learning import annotation_store
from orchestrator.learning.models import Project


class Command(BaseCommand):
    help = ("Read a project's annotations from Label Studio into the service's annotation store: what changed "
            "since the last check, or everything with --full (under the project's training lease).")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Label Studio project id.")
        parser.add_argument("--full", action="store_true", help="Read every annotated task again.")

    def handle(self, *args, project: int, full: bool, **options):
        row = Project.objects.filter(ls_project_id=project).first()
        if row is None:
            raise CommandError(f"project {project} is unknown: connect it in Label Studio first (it calls /setup)")
        if not label_studio.is_configured():
            raise CommandError("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set to read annotations")
        outcome = annotation_store.sync_now(row.pk, full=full)
        if outcome.startswith("failed"):
            raise CommandError(outcome)
        counts = annotation_store.counts(row)
        self.stdout.write(f"project {project}: {outcome}; the store holds {counts['tasks']} tasks, "
                          f"{counts['annotations']} annotations ({counts['skipped']} skips)")
