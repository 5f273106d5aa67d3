"""What the scoring tests share: running a scoring run in process."""
from __future__ import annotations

from orchestrator.learning.models import ScoringRun
from orchestrator.learning.scoring import job, runs


def score_now(project, **kwargs) -> ScoringRun:
    """Ask for a run as `manage.py score_project` does and run it here."""
    run = runs.request_scoring(project, trigger="manual", enqueue=False, **kwargs)
    job.run_scoring(run.pk)
    run.refresh_from_db()
    return run
