"""What can start a training run or a scoring run: the values of their `trigger`, as the API's schema lists them."""
from __future__ import annotations

TRAINING_TRIGGER_MEANINGS = (
    ("start_training", "Label Studio's Start Training (or its legacy /train)"),
    ("console", "the console's Train now (with even if unchanged, also on the annotations the latest version "
                "learned)"),
    ("api", "POST /api/projects/{id}/train/ (with even_if_unchanged, also on the annotations the latest "
            "version learned)"),
    ("annotations", "the policy's retrain_every annotations arrived"),
    ("quiet", "annotations arrived, then the policy's quiet_seconds passed"),
    ("manual", "manage.py train_project"),
)

SCORING_TRIGGER_MEANINGS = (
    ("connect", "a project connected: the cold start's order"),
    ("promotion", "a version started serving after its training"),
    ("promote", "an operator promoted or rolled back a version"),
    ("strategy", "an operator changed the strategy"),
    ("tasks_created", "Label Studio created tasks (its TASKS_CREATED webhook)"),
    ("schedule", "the project's re-scoring schedule"),
    ("admin", "the console's Score unlabeled tasks action"),
    ("api", "POST /api/projects/{id}/score/"),
    ("manual", "manage.py score_project"),
    ("retry", "an operator retried a failed or cancelled run"),
    ("resume", "beat resumed a failed push"),
)


def _choices(meanings: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    return [(value, value) for value, _ in meanings]  # the value itself is what lists and the API show


def _help(meanings: tuple[tuple[str, str], ...]) -> str:
    return "; ".join(f"{value}: {meaning}" for value, meaning in meanings) + "."


TRAINING_TRIGGERS, TRAINING_TRIGGERS_HELP = _choices(TRAINING_TRIGGER_MEANINGS), _help(TRAINING_TRIGGER_MEANINGS)
SCORING_TRIGGERS, SCORING_TRIGGERS_HELP = _choices(SCORING_TRIGGER_MEANINGS), _help(SCORING_TRIGGER_MEANINGS)
