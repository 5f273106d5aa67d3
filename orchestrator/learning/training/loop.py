"""A training check run by a worker: decide, then train under the project's lease; and beat's reconciliation.

Training holds a lease on the project (`Project.training_lease_*`), renewed while it runs,
so one training runs per project; a killed worker's lease lapses and the next check takes
over. Events recorded during a training stay pending and lead to the next one, which brings the
annotation store up to Label Studio (what changed) and learns from all of it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from backends import TrainingDataError
from orchestrator.gateways import label_studio, label_studio_tasks
from orchestrator.learning import annotation_store, leases, selectors
from orchestrator.learning.events import TRAINING_EVENTS
from orchestrator.learning.models import ModelVersion, Project, TrainingRun, WebhookEvent
from orchestrator.learning.timings import PhaseTimer
from orchestrator.learning.training import promotion
from orchestrator.learning.training.dataset import read_dataset
from orchestrator.learning.training.fit import evaluate_served, evaluation_waits, train_model_version
from orchestrator.learning.training.schedule import POLL_SECONDS, decide, pending_of, request_check

logger = logging.getLogger(__name__)

# Triggers a person asked for: they train whatever the policy's minimum or the data say.
ASKED = frozenset({"start_training", "console", "api", "manual"})
# Training even on the annotations the latest version learned: the command line always, the console
# and the API when asked "even if unchanged" (the pending events say); never Start Training alone,
# which comes through /webhook, which anyone who can reach the service could call.
REPEATS = frozenset({"manual"})


@dataclass(frozen=True)
class CheckResult:
    outcome: str  # idle | later | busy | trained | failed | skipped
    run: TrainingRun | None = None

    def __str__(self) -> str:
        return self.outcome if self.run is None else f"{self.outcome} run={self.run.pk}"


def run_check(project_pk: int) -> CheckResult:
    """A scheduled check: decide, and train under the lease if due."""
    now = timezone.now()
    Project.objects.filter(pk=project_pk, training_check_at__lte=now + timedelta(seconds=0.5)).update(
        training_check_at=None)
    project = Project.objects.filter(pk=project_pk).first()
    if project is None:
        return CheckResult("idle")
    decision = decide(selectors.training_policy(project), pending_of(project), now)
    if not decision.train:
        if decision.check_at is not None:
            request_check(project_pk, delay=(decision.check_at - now).total_seconds())
            return CheckResult("later")
        return CheckResult("idle")
    return train_now(project, trigger=decision.trigger)


def train_now(project: Project, *, trigger: str, reschedule_if_busy: bool = True) -> CheckResult:
    """Train the project now if no other training holds its lease; then look at what is left."""
    owner = leases.new_owner()
    if not leases.acquire(project.pk, owner, kind="training"):
        if not reschedule_if_busy:
            return CheckResult("busy")
        until = leases.held_until(project.pk, kind="training")
        # The holder looks again when it ends; if it died, the lease lapses and this check runs then.
        delay = (until - timezone.now()).total_seconds() + 0.5 if until else POLL_SECONDS
        request_check(project.pk, delay=max(POLL_SECONDS, delay))
        return CheckResult("busy")
    try:
        _abandon_dead_runs(project)
        with leases.Heartbeat(project.pk, owner, kind="training"):
            result = _train(project, trigger=trigger, owner=owner)
    finally:
        leases.release(project.pk, owner, kind="training")
    # Events that came during the training lead to the next check.
    project.refresh_from_db()
    decision = decide(selectors.training_policy(project), pending_of(project), timezone.now())
    if decision.train:
        request_check(project.pk)
    elif decision.check_at is not None:
        request_check(project.pk, delay=(decision.check_at - timezone.now()).total_seconds())
    return result


def _abandon_dead_runs(project: Project) -> None:
    """Holding the lease, any run still marked running belongs to a worker that died."""
    dead = TrainingRun.objects.filter(project=project, status=TrainingRun.Status.RUNNING)
    for run in dead:
        logger.warning("training_abandoned project=%s run=%s owner=%s", project.ls_project_id, run.pk, run.owner)
        if run.model_version_id:
            ModelVersion.objects.filter(pk=run.model_version_id, status=ModelVersion.Status.TRAINING).update(
                status=ModelVersion.Status.FAILED, error="the worker stopped during training", finished_at=timezone.now())
        run.status = TrainingRun.Status.FAILED
        run.detail = "the worker stopped during training (lease expired); a new run took over"
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "detail", "finished_at"])
    # A version row left in training by a run that never recorded it (killed in between).
    ModelVersion.objects.filter(project=project, status=ModelVersion.Status.TRAINING).update(
        status=ModelVersion.Status.FAILED, error="the worker stopped during training", finished_at=timezone.now())


class CancelError(RuntimeError):
    """A training run that cannot be cancelled (it is over)."""


class _Cancelled(Exception):
    pass


def cancel(run: TrainingRun, *, by: str = "") -> TrainingRun:
    """Ask a running training to stop: it does before its next phase (after counting, reading or
    fitting). A version it already fitted stays ready (it can be promoted) and is not promoted."""
    who = by or "an operator"
    if not TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(cancel_requested_by=who):
        run.refresh_from_db()
        raise CancelError(f"training run {run.pk} is {run.status}: only a running training can be cancelled")
    run.refresh_from_db()
    logger.info("training_cancel_requested project=%s run=%s by=%s", run.project.ls_project_id, run.pk, who)
    return run


def _stop_if_cancelled(run: TrainingRun) -> None:
    who = TrainingRun.objects.filter(pk=run.pk).values_list("cancel_requested_by", flat=True).first()
    if who:
        raise _Cancelled(who)


def _train(project: Project, *, trigger: str, owner: str) -> CheckResult:
    """One training run: count, read, skip when there is nothing new to learn, train, promote or not."""
    policy = selectors.training_policy(project)
    pending = pending_of(project)
    run = TrainingRun.objects.create(project=project, trigger=trigger, owner=owner,
                                     events_through=pending.through_id, num_events=pending.events)
    logger.info("training_started project=%s run=%s trigger=%s events=%s", project.ls_project_id, run.pk,
                trigger, pending.events)
    asked = trigger in ASKED
    timer = PhaseTimer()
    try:
        run.ls_annotation_count = label_studio.with_retries(
            lambda: label_studio_tasks.annotation_count(project.ls_project_id), what="counting annotations")
        if not asked and run.ls_annotation_count < policy.min_annotations:
            return _finish(run, TrainingRun.Status.SKIPPED, "skipped", f"{run.ls_annotation_count} "
                           f"annotations in Label Studio; the policy trains from {policy.min_annotations}")
        _stop_if_cancelled(run)
        dataset = timer("read", lambda: read_dataset(project))
        run.timings = timer.rounded()
        run.num_annotations = len(dataset.examples)
        _stop_if_cancelled(run)
        if not asked and len(dataset.examples) < policy.min_annotations:
            return _finish(run, TrainingRun.Status.SKIPPED, "skipped", f"{len(dataset.examples)} usable "
                           f"annotations; the policy trains from {policy.min_annotations}")
        latest = _latest_trained(project)
        repeat = trigger in REPEATS or pending.repeat
        if not repeat and latest is not None and latest.data_digest == dataset.digest:
            again = (" (to train on them again: the console's Train now, even if unchanged)"
                     if trigger in ASKED else "")
            return _finish(run, TrainingRun.Status.SKIPPED, "skipped",
                           f"the annotations are the ones {latest.version} learned{again}")
        serving = project.serving_version if project.serving_version_id else None
        try:
            version = train_model_version(project=project, examples=dataset.examples,
                                          annotation_ids=dataset.annotation_ids, data_digest=dataset.digest,
                                          promote=False, on_created=lambda v: _attach(run, v), timer=timer,
                                          audit=dataset.audit, trained_ids=dataset.task_ids)
        finally:
            run.timings = timer.rounded()
        run.model_version = version
        _stop_if_cancelled(run)
        run.promoted, why = promotion.promote_if_allowed(version=version, policy=policy, serving=serving,
                                                         audit=dataset.audit, trained_ids=dataset.task_ids)
        if evaluation_waits(project, len(dataset.examples)):  # measured now that it serves (large sets)
            evaluate_served(version, dataset.examples, timer)
            run.timings = timer.rounded()
        return _finish(run, TrainingRun.Status.SUCCEEDED, "trained", why)
    except _Cancelled as who:
        kept = (f"; {run.model_version.version} was trained and stays ready, not promoted" if run.model_version
                else "")
        return _finish(run, TrainingRun.Status.CANCELLED, "cancelled", f"cancelled by {who}{kept}")
    except Exception as exc:  # recorded, never raised: the worker lives on, the old version serves
        detail = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (TrainingDataError, label_studio.LabelStudioError)):
            logger.exception("training_crashed project=%s run=%s", project.ls_project_id, run.pk)
        return _finish(run, TrainingRun.Status.FAILED, "failed", detail)


def _latest_trained(project: Project) -> ModelVersion | None:
    done = [ModelVersion.Status.READY, ModelVersion.Status.SERVING, ModelVersion.Status.RETIRED]
    return ModelVersion.objects.filter(project=project, status__in=done).order_by("-created_at", "-pk").first()


def _attach(run: TrainingRun, version: ModelVersion) -> None:
    run.model_version = version
    run.save(update_fields=["model_version"])


def _finish(run: TrainingRun, status: str, outcome: str, detail: str) -> CheckResult:
    with transaction.atomic():
        run.status = status
        run.detail = detail[:5000]
        run.finished_at = timezone.now()
        run.save()
        # Events are triggers: once a run has read the data they asked for, they are done,
        # whatever the outcome (a failed run is not retried forever; the next event retries).
        WebhookEvent.objects.filter(project=run.project, processed_at=None, action__in=TRAINING_EVENTS,
                                    pk__lte=run.events_through).update(processed_at=run.finished_at)
    # A failure is the operator's to act on (Label Studio unreachable or not configured, a bad label config).
    logger.log(logging.WARNING if status == TrainingRun.Status.FAILED else logging.INFO,
               "training_%s project=%s run=%s annotations=%s version=%s promoted=%s %s", outcome,
               run.project.ls_project_id, run.pk, run.num_annotations,
               run.model_version.version if run.model_version else "-", run.promoted, detail)
    return CheckResult(outcome, run)


# --- reconciliation ---------------------------------------------------------------------------
def reconcile() -> dict[str, int]:
    """Beat's periodic pass: re-ask for lost checks, and notice annotations no webhook announced."""
    now = timezone.now()
    asked = noticed = failed = 0
    for project in Project.objects.all():
        # One project's bad state (a row no check can read) never stops the pass for the others.
        try:
            seen, wanted = _reconcile_one(project, now)
        except Exception:
            logger.exception("reconcile_failed project=%s", project.ls_project_id)
            failed += 1
            continue
        noticed, asked = noticed + seen, asked + wanted
    return {"checks_requested": asked, "changes_noticed": noticed, "projects_failed": failed}


def _reconcile_one(project: Project, now) -> tuple[int, int]:
    lease_live = project.training_lease_until is not None and project.training_lease_until > now
    check_live = project.training_check_at is not None and project.training_check_at > now - timedelta(minutes=5)
    if lease_live or check_live:
        return 0, 0
    noticed = 0
    if label_studio.is_configured() and _annotations_changed_unseen(project):
        WebhookEvent.objects.create(project=project, ls_project_id=project.ls_project_id, action="RECONCILE")
        noticed = 1
    decision = decide(selectors.training_policy(project), pending_of(project), now)
    if decision.train or decision.check_at is not None:
        return noticed, int(request_check(project.pk))
    return noticed, 0


def _annotations_changed_unseen(project: Project) -> bool:
    """Annotations changed in Label Studio and no event says so (a lost webhook): the annotation store's
    check finds it, an edit or a deletion as well as a different count. Runs under the training lease,
    so it never writes the store beside a training; a project training now is looked at next time."""
    if not TrainingRun.objects.filter(project=project).exists() or pending_of(project).events:
        return False
    owner = leases.new_owner()
    if not leases.acquire(project.pk, owner, kind="training"):
        return False
    try:
        with leases.Heartbeat(project.pk, owner, kind="training"):
            report = annotation_store.sync(project)
    except label_studio.LabelStudioError as exc:
        logger.warning("reconcile_read_failed project=%s error=%s", project.ls_project_id, exc)
        return False
    finally:
        leases.release(project.pk, owner, kind="training")
    return report.stored > 0 or report.removed > 0
