"""What an operator does to a project's model versions: promote one, roll back, retire one.

Each act serves through `promotion.promote_version` (database, MLflow alias, the caches) and
re-scores the queue with what now serves, whatever the scoring policy's `auto_push` says:
a person asked for it. Refusals raise VersionError saying why and what to do instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction

from orchestrator.gateways import label_studio
from orchestrator.learning.models import ModelVersion, Project, ScoringRun, ServingHistory
from orchestrator.learning.scoring import runs
from orchestrator.learning.training.promotion import promote_version

logger = logging.getLogger(__name__)


class VersionError(ValueError):
    """The version cannot do what was asked (not trained, another label config, serving...)."""


@dataclass(frozen=True)
class Served:
    """The outcome of a promotion or roll back: what serves now, and the re-scoring asked for."""

    version: ModelVersion
    previous: ModelVersion | None
    scoring_run: ScoringRun | None

    def describe(self) -> str:
        was = f" (was {self.previous.version})" if self.previous and self.previous.pk != self.version.pk else ""
        if self.scoring_run is not None:
            push = f"; scoring run {self.scoring_run.pk} re-scores the queue ({self.scoring_run.tag})"
        elif label_studio.is_configured():
            push = "; the queue could not be re-scored: see the log"
        else:
            push = "; LABEL_STUDIO_URL is unset, so the queue is not re-scored"
        return f"{self.version.version} serves{was}{push}"


def can_serve(version: ModelVersion) -> str | None:
    """Why `version` cannot serve its project now (None: it can)."""
    if version.status in (ModelVersion.Status.TRAINING, ModelVersion.Status.FAILED):
        return f"{version.version} is {version.status}: only a trained version can serve"
    if not version.model_uri:
        return f"{version.version} has no registered model to load"
    if version.label_config_digest != version.project.label_config_digest:
        return (f"{version.version} was trained on another label config than the project's current one: "
                "train a new version instead")
    return None


def promote(version: ModelVersion, *, history: list[int] | None = None) -> Served:
    """Serve `version` now and re-score the queue with it (a retired version may be promoted again).
    The version it replaces goes on the project's serving history (`history`: a roll back's own)."""
    why = can_serve(version)
    if why:
        raise VersionError(why)
    previous = version.project.serving_version
    promote_version(version=version, request_push=False, history=history)
    logger.info("version_promoted project=%s version=%s previous=%s", version.project.ls_project_id,
                version.version, previous.version if previous else "-")
    return Served(version, previous, _rescore(version.project))


def roll_back_target(project: Project) -> ModelVersion | None:
    """The version a roll back serves: the one served before the last promotion (an undo), or before
    that one if it cannot serve any more (retired, failed, deleted, another label config). None if
    no version served before can."""
    return _undo(project)[0]


def _undo(project: Project) -> tuple[ModelVersion | None, list[int]]:
    """The roll back's version, and the serving history left once it serves (it and what came after go)."""
    if project.serving_version_id is None:
        return None, []
    past = list(ServingHistory.objects.filter(project=project).values_list("replaced", flat=True).first() or [])
    versions = ModelVersion.objects.select_related("project").in_bulk(past)
    while past:
        version = versions.get(past.pop())
        if (version is not None and version.pk != project.serving_version_id
                and version.status == ModelVersion.Status.READY and can_serve(version) is None):
            return version, past
    return None, []


def roll_back(project: Project) -> Served:
    """Undo the last promotion: serve the version it replaced (`roll_back_target`) and re-score the queue."""
    if project.serving_version is None:
        raise VersionError(f"{project} serves no version yet: nothing to roll back")
    target, left = _undo(project)
    if target is None:
        raise VersionError(f"{project}: no version served before {project.serving_version.version} can serve "
                           f"again (each is retired, failed, deleted, or trained on another label config); "
                           f"{project.serving_version.version} keeps serving")
    return promote(target, history=left)


def retire(version: ModelVersion) -> ModelVersion:
    """Take a version out of use: a roll back skips it from now on. The serving version cannot be
    retired (promote or roll back to another first)."""
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().select_related("project").get(pk=version.pk)
        if locked.project.serving_version_id == locked.pk:
            raise VersionError(f"{locked.version} serves {locked.project}: promote another version or roll back "
                               "first, then retire it")
        if locked.status == ModelVersion.Status.TRAINING:
            raise VersionError(f"{locked.version} is still training")
        if locked.status != ModelVersion.Status.RETIRED:
            locked.status = ModelVersion.Status.RETIRED
            locked.save(update_fields=["status"])
    logger.info("version_retired project=%s version=%s", locked.project.ls_project_id, locked.version)
    return locked


def _rescore(project: Project) -> ScoringRun | None:
    if not label_studio.is_configured():
        return None
    try:
        return runs.request_scoring(project, trigger="promote")
    except Exception:  # the version serves; beat's reconciliation and the admin's push remain
        logger.exception("scoring_not_requested project=%s", project.ls_project_id)
        return None
