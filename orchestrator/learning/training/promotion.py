"""Whether a new version serves, and the act of serving it: the database, MLflow's alias, a push.

The rule is the project's training policy (`promotion`): `always`, or `if_not_worse`: unless, on
the audit sample's labels (held out of every training, drawn uniformly: learning/audit.py), the new
version's macro-F1 is lower than the serving version's by more than `max_macro_f1_drop` and the 90%
interval of the difference lies wholly below zero. The two are compared on the same tasks (paired),
so a real drop shows while noise does not refuse a better version. Cross-validation on the labelled
set is not used: the queue picks hard tasks, so it falls as the models get better.
"""
from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from django.db import transaction

from backends import Example, backend_for, quality
from orchestrator.gateways import mlflow_store
from orchestrator.learning import stopping
from orchestrator.learning.model_cache import model_cache
from orchestrator.learning.models import ModelVersion, Project, ScoringRun, ServingHistory, TrainingPolicy
from orchestrator.learning.scoring import runs

logger = logging.getLogger(__name__)

NO_AUDIT = ("promoted: no audit label yet to compare it with the serving version on (cross-validation on the "
            "labelled set leans toward the hard tasks the queue picks; the rule does not use it)")


def should_promote(policy: TrainingPolicy, comparison: quality.Comparison | None, *,
                   serving: bool = True) -> tuple[bool, str]:
    """The promotion policy on the new version's macro-F1 minus the serving one's (`comparison`, on the
    audit labels; None when there are none), and why not when it refuses."""
    if policy.promotion == TrainingPolicy.Promotion.ALWAYS or not serving:
        return True, ""
    if comparison is None:
        return True, NO_AUDIT
    drop = -comparison.difference
    if comparison.high < 0 and drop > policy.max_macro_f1_drop:
        return False, (f"kept the serving version: on {comparison.audit_labels} audit labels the new version's "
                       f"macro-F1 is {drop:.4f} below it (90% interval of the difference {comparison.low:+.4f} to "
                       f"{comparison.high:+.4f}; allowed drop {policy.max_macro_f1_drop})")
    return True, ""


def compare_on_audit(version: ModelVersion, serving: ModelVersion | None, audit: Sequence[Example],
                     trained_ids: Collection[int] = ()) -> quality.Comparison | None:
    """`version`'s macro-F1 minus `serving`'s on the audit labels and the stop set's tasks outside
    `trained_ids` (the new version's training tasks); None without audit labels, or when the two learned
    different label configs or either model cannot be loaded."""
    if serving is None or not audit or not serving.model_uri or not version.model_uri \
            or serving.label_config_digest != version.label_config_digest:
        return None
    project = version.project
    try:
        new = model_cache.load(version.model_uri, backend_for(project.label_config, features=version.features))
        old = model_cache.load(serving.model_uri, backend_for(project.label_config, features=serving.features))
    except Exception:
        logger.warning("audit_comparison_skipped project=%s version=%s serving=%s", project.ls_project_id,
                       version.version, serving.version, exc_info=True)
        return None
    backend = backend_for(project.label_config)
    texts = [e.text for e in audit]
    found = stopping.stop_texts(project)
    population = found[1] if found is not None else None
    if population and trained_ids:
        trained, ids = set(trained_ids), stopping.stop_ids(project)
        if len(ids) == len(population):
            population = [text for i, text in zip(ids, population) if i not in trained]
    return quality.compare(
        quality.one_hot([e.labels for e in audit], backend.labels), new.predict_proba(texts), old.predict_proba(texts),
        new.predict_proba(population) if population else None, old.predict_proba(population) if population else None,
        multiple=backend.multiple)


def promote_if_allowed(*, version: ModelVersion, policy: TrainingPolicy, serving: ModelVersion | None,
                       audit: Sequence[Example] = (), trained_ids: Collection[int] = ()) -> tuple[bool, str]:
    """Serve `version` if the policy lets it replace `serving` (compared on the audit labels); whether, and why."""
    comparison = (compare_on_audit(version, serving, audit, trained_ids)
                  if policy.promotion == TrainingPolicy.Promotion.IF_NOT_WORSE else None)
    promote, why = should_promote(policy, comparison, serving=serving is not None)
    if promote:
        promote_version(version=version, request_push=True)
    return promote, why


def promote_version(*, version: ModelVersion, request_push: bool,
                    history: list[int] | None = None) -> ScoringRun | None:
    """Make `version` the one its project serves (database and MLflow alias); the previous one
    goes back to ready (a roll back may serve it again; only an operator retires a version) and
    is recorded in the project's serving history, unless `history` is given: a roll back (an undo)
    sets the history to what is left of it.

    With `request_push`, then asks for a push of its scores to Label Studio (queued; the
    project's scoring policy may have turned automatic pushes off); a failure to ask is
    logged and never undoes the promotion. Returns the scoring run asked for, if any.
    """
    project = version.project
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        previous_id = locked.serving_version_id
        if previous_id and previous_id != version.pk:
            ModelVersion.objects.filter(pk=previous_id, status=ModelVersion.Status.SERVING).update(
                status=ModelVersion.Status.READY)
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.SERVING)
        locked.serving_version = version
        locked.save(update_fields=["serving_version", "updated_at"])
        past, _ = ServingHistory.objects.select_for_update().get_or_create(project=locked)
        if history is not None:
            past.replaced = list(history)
        elif previous_id and previous_id != version.pk:
            past.replaced = [*past.replaced, previous_id][-ServingHistory.KEEP:]
        past.save(update_fields=["replaced"])
    version.status = ModelVersion.Status.SERVING
    if version.mlflow_model_name:
        mlflow_store.set_serving_alias(name=version.mlflow_model_name, version=version.mlflow_model_version)
    model_cache.forget(project.ls_project_id)
    if not request_push:
        return None
    try:
        return runs.request_push(version)
    except Exception:
        logger.exception("scoring_not_requested project=%s version=%s", project.ls_project_id, version.version)
        return None
