"""`manage.py score_project`: score a project's unlabeled tasks and push them to Label Studio now."""
from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orchestrator.gateways import label_studio
from orchestrator.learning.models import Project, ScoringRun
from orchestrator.learning.scoring import job, runs


class Command(BaseCommand):
    help = ("Score every unlabeled task of a project with its serving version and push the predictions to "
            "Label Studio (resumes the last failed push of that version).")

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Label Studio project id.")
        parser.add_argument("--incremental", action="store_true",
                            help="Only tasks created since the last push (same model_version).")
        parser.add_argument("--queue", action="store_true",
                            help="Hand the run to a Celery worker instead of running it here.")

    def handle(self, *args, project: int, incremental: bool, queue: bool, **options):
        row = Project.objects.select_related("serving_version").filter(ls_project_id=project).first()
        if row is None:
            raise CommandError(f"project {project} is unknown: connect it in Label Studio first (it calls /setup)")
        if not label_studio.is_configured():
            raise CommandError("LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY must be set to push predictions")
        mode = ScoringRun.Mode.INCREMENTAL if incremental else ScoringRun.Mode.FULL
        run = runs.request_scoring(row, trigger="manual", mode=mode, enqueue=queue)
        if run is None:
            raise CommandError(f"project {project} has no trained version serving for its label config yet: "
                               "train one first (manage.py train_project)")
        if queue:
            self.stdout.write(f"queued scoring run {run.pk} ({run.mode}, model_version {run.tag})")
            return
        outcome = job.run_scoring(run.pk)
        run.refresh_from_db()
        line = (f"scoring run {run.pk}: {outcome}; model_version {run.tag}; {run.done} of {run.total} unlabeled "
                f"tasks carry it; timings {run.timings}")
        if outcome == "busy":
            raise CommandError(f"another scoring run of project {project} is running; run {run.pk} is queued")
        if outcome != ScoringRun.Status.SUCCEEDED:
            raise CommandError(f"{line}\n{run.error}\nRun the command again to resume.")
        self.stdout.write(line)
