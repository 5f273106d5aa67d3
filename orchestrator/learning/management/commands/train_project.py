"""`manage.py train_project`: train, register and serve a project's model now.

Reads the annotations from Label Studio (through the gateway), or a labelled CSV/TSV file.
"""
from __future__ import annotations

import csv
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from backends import Example, TrainingDataError, backend_for
from orchestrator.learning.models import Project, TrainingRun
from orchestrator.learning.training import loop
from orchestrator.learning.training.fit import train_model_version


class Command(BaseCommand):
    help = "Train a new model version for a Label Studio project and make it serve."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True, help="Label Studio project id.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--from-label-studio", action="store_true", help="Read the project's annotations.")
        source.add_argument("--from-file", type=Path, help="CSV/TSV with a label and a text column.")
        parser.add_argument("--text-column", default="text")
        parser.add_argument("--label-column", default="label")
        parser.add_argument("--limit", type=int, default=0, help="Use only the first N rows of the file.")
        parser.add_argument("--no-promote", action="store_true", help="With --from-file: register the version without serving it (from Label Studio, the project's promotion policy decides).")

    def handle(self, *args, project: int, from_label_studio: bool, from_file: Path | None, text_column: str,
               label_column: str, limit: int, no_promote: bool, **options):
        row = Project.objects.filter(ls_project_id=project).first()
        if row is None:
            raise CommandError(f"project {project} is unknown: connect it in Label Studio first (it calls /setup)")
        backend = backend_for(row.label_config)
        if from_label_studio:
            # The same path as the background loop: under the project's lease, the policy's promotion rule.
            result = loop.train_now(row, trigger="manual", reschedule_if_busy=False)
            if result.outcome == "busy":
                raise CommandError(f"project {project} is training right now; try again when it finishes")
            run = result.run
            if run.status == TrainingRun.Status.FAILED:
                raise CommandError(f"training failed: {run.detail}")
            version, count = run.model_version, run.num_annotations
        else:
            examples = self._read_file(from_file, text_column, label_column, limit, backend.labels)
            try:
                version = train_model_version(project=row, examples=examples, promote=not no_promote)
            except TrainingDataError as exc:
                raise CommandError(str(exc)) from exc
            count = len(examples)
        version.refresh_from_db()
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in sorted(version.metrics.items()))
        self.stdout.write(f"{version.version} {version.status} on {count} examples: {metrics}")

    def _read_file(self, path: Path, text_column: str, label_column: str, limit: int, labels) -> list[Example]:
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        with path.open(encoding="utf-8", newline="") as f:
            dialect = "excel-tab" if path.suffix in {".tsv", ".tab"} else "excel"
            reader = csv.DictReader(f, dialect=dialect, quoting=csv.QUOTE_NONE if dialect == "excel-tab" else csv.QUOTE_MINIMAL)
            missing = {text_column, label_column} - set(reader.fieldnames or ())
            if missing:
                raise CommandError(f"{path} has no column(s) {sorted(missing)}; columns: {reader.fieldnames}")
            examples = []
            for row in reader:
                label = row[label_column]
                if label not in labels:
                    raise CommandError(f"{path}: label {label!r} is not a choice of the project ({', '.join(labels)})")
                examples.append(Example(text=row[text_column], labels=(label,)))
                if limit and len(examples) >= limit:
                    break
        return examples
