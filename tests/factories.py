"""Small factories for test data: Label Studio task objects, training examples, rows of our own.

Each builds one thing with sensible defaults; a test names only what matters to it.
"""
from __future__ import annotations

from collections.abc import Iterable

SMS_REVISION = "2026-11-23T10:00:00Z"


def examples(rows: Iterable[tuple[str, str]]):
    """Training examples from (label, text) rows, one label each."""
    from backends import Example

    return [Example(text=text, labels=(label,)) for label, text in rows]


def ls_tasks(rows: Iterable[tuple[str, str]], *, start_id: int = 1, revision: str = SMS_REVISION) -> list[dict]:
    """Label Studio task objects with one annotation each (SMS config), as its API returns them."""
    return [
        {"id": start_id + i, "data": {"text": text}, "annotations": [{
            "id": 1000 + start_id + i, "was_cancelled": False, "ground_truth": False, "updated_at": revision,
            "result": [{"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}],
        }]}
        for i, (label, text) in enumerate(rows)
    ]


def training_policy(**fields):
    """An unsaved training policy: the defaults the tests reason from, with `fields` changed."""
    from orchestrator.learning.models import TrainingPolicy

    return TrainingPolicy(**{"auto_train": True, "min_annotations": 10, "retrain_every": 25, "quiet_seconds": 20.0,
                             **fields})


def webhook_event(project, action: str = "ANNOTATION_CREATED", annotation_ids: Iterable[int] = (1,)):
    """A recorded event of the project, as /webhook stores it."""
    from orchestrator.learning.models import WebhookEvent

    return WebhookEvent.objects.create(project=project, ls_project_id=project.ls_project_id, action=action,
                                       annotation_ids=list(annotation_ids))


def scoring_run(project, version, *, tag: str, **fields):
    """A scoring run row of `version` under `tag` (queued, a manual full run, unless said otherwise)."""
    from orchestrator.learning.models import ScoringRun

    fields = {"strategy": "least_confidence", "trigger": "manual", "status": ScoringRun.Status.QUEUED, **fields}
    return ScoringRun.objects.create(project=project, model_version=version, tag=tag, **fields)
