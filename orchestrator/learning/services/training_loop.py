"""The training loop: webhook events in, at most one training per project at a time, versions out.

Events are triggers, never data: a training always reads the project's current
annotations back from Label Studio, so duplicate, late, out-of-order or lost webhooks
cannot make a model learn the wrong thing; they only change *when* it trains.

How a burst is coalesced:
1. The webhook records the event and asks for a check (`request_check`). A project has
   at most one check scheduled (`Project.training_check_at`); an earlier request moves it.
2. The check (a Celery task) looks at the pending events and the project's
   `TrainingPolicy` (`decide`): train now, look again later, or nothing to do.
3. Training holds a lease on the project (`Project.training_lease_*`), renewed while it
   runs, so one training runs per project; a killed worker's lease lapses and the next
   check takes over. Events recorded during a training stay pending and lead to the next
   one, which reads every annotation again.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from backends import TrainingDataError, backend_for
from orchestrator.gateways import label_studio
from orchestrator.learning.models import ModelVersion, Project, TrainingPolicy, TrainingRun, WebhookEvent
from orchestrator.learning.services import events, leases
from orchestrator.learning.services.events import TRAINING_EVENTS
from orchestrator.learning.services.training import (
    examples_from_tasks,
    promote_version,
    train_model_version,
)

logger = logging.getLogger(__name__)

FORCE_ACTIONS = frozenset({"START_TRAINING", "TRAIN"})
# While changes are pending but not yet due, look again at least this often.
POLL_SECONDS = 2.0


# --- deciding ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """What the unprocessed training events of a project add up to."""

    events: int = 0
    changes: int = 0  # annotation ids they name (at least one per event)
    forced: bool = False  # START_TRAINING or the legacy /train among them
    last_at: datetime | None = None
    through_id: int = 0


@dataclass(frozen=True)
class Decision:
    train: bool
    trigger: str = ""
    check_at: datetime | None = None  # not due yet: look again then


def decide(policy: TrainingPolicy, pending: Pending, now: datetime) -> Decision:
    """Train now, look again at `check_at`, or do nothing (pure: no I/O)."""
    if pending.events == 0:
        return Decision(train=False)
    if pending.forced:
        return Decision(train=True, trigger="start_training")
    if not policy.auto_train:
        return Decision(train=False)
    if policy.retrain_every and pending.changes >= policy.retrain_every:
        return Decision(train=True, trigger="annotations")
    if policy.quiet_seconds > 0 and pending.last_at is not None:
        quiet_at = pending.last_at + timedelta(seconds=policy.quiet_seconds)
        if now >= quiet_at:
            return Decision(train=True, trigger="quiet")
        return Decision(train=False, check_at=min(quiet_at, now + timedelta(seconds=POLL_SECONDS)))
    if policy.retrain_every:  # counting towards N: look again as events come
        return Decision(train=False, check_at=now + timedelta(seconds=POLL_SECONDS))
    return Decision(train=False)


def should_promote(policy: TrainingPolicy, new: dict[str, float], serving: dict[str, float] | None) -> tuple[bool, str]:
    """The promotion policy: always, or unless cross-validated macro-F1 drops by more than the margin."""
    if policy.promotion == TrainingPolicy.Promotion.ALWAYS or serving is None:
        return True, ""
    if "macro_f1" not in new or "macro_f1" not in serving:
        return True, "promoted: too few annotations to compare macro-F1"
    drop = serving["macro_f1"] - new["macro_f1"]
    if drop > policy.max_macro_f1_drop:
        return False, (f"kept the serving version: macro-F1 {new['macro_f1']:.4f} is {drop:.4f} below "
                       f"{serving['macro_f1']:.4f} (allowed drop {policy.max_macro_f1_drop})")
    return True, ""


def policy_of(project: Project) -> TrainingPolicy:
    policy = getattr(project, "_policy_cache", None)
    if policy is None:
        policy, _ = TrainingPolicy.objects.get_or_create(project=project)
    return policy


def pending_of(project: Project, through_id: int | None = None) -> Pending:
    rows = WebhookEvent.objects.filter(project=project, processed_at=None, action__in=TRAINING_EVENTS)
    if through_id is not None:
        rows = rows.filter(pk__lte=through_id)
    events = changes = 0
    forced = False
    last_at, last_id = None, 0
    for pk, action, ids, received_at in rows.values_list("pk", "action", "annotation_ids", "received_at").iterator():
        events += 1
        changes += max(1, len(ids or ()))
        forced = forced or action in FORCE_ACTIONS
        last_at = received_at if last_at is None or received_at > last_at else last_at
        last_id = max(last_id, pk)
    return Pending(events=events, changes=changes, forced=forced, last_at=last_at, through_id=last_id)


# --- scheduling -------------------------------------------------------------------------------
_UNKNOWN: Any = object()


def request_check(project_id: int, *, delay: float = 0.0, scheduled: datetime | None = _UNKNOWN) -> bool:
    """Ask for a training check of a project (by pk) in `delay` seconds, unless one comes sooner.

    `scheduled`: the project's `training_check_at` if the caller just read it.
    Returns whether a Celery message was sent. A failure to reach the broker is logged,
    not raised: the events stay pending and beat's reconciliation picks them up.
    """
    at = timezone.now() + timedelta(seconds=max(0.0, delay))
    # Most events of a burst find a check already scheduled: a read settles it without a write.
    if scheduled is _UNKNOWN:
        scheduled = Project.objects.filter(pk=project_id).values_list("training_check_at", flat=True).first()
    if scheduled is not None and scheduled <= at:
        return False
    sooner = Q(training_check_at__isnull=True) | Q(training_check_at__gt=at)
    with events.write_turn():  # a webhook's write: in turn with the other acks on SQLite
        if not Project.objects.filter(pk=project_id).filter(sooner).update(training_check_at=at):
            return False
    from orchestrator.learning import tasks

    try:
        tasks.check_training.apply_async((project_id,), countdown=max(0.0, delay))
    except Exception:
        logger.exception("check_not_queued project_pk=%s (reconciliation will retry)", project_id)
        Project.objects.filter(pk=project_id, training_check_at=at).update(training_check_at=None)
        return False
    return True


def on_event(event: WebhookEvent) -> None:
    """Called by /webhook and /train after recording an event: schedule a check if it matters."""
    if event.project_id is None or event.action not in TRAINING_EVENTS:
        return
    snapshot = getattr(event, "project_snapshot", None)  # what record_event read along the way
    if event.action in FORCE_ACTIONS:
        request_check(event.project_id)
        return
    if snapshot is not None and snapshot["pk"] == event.project_id:
        defaults = TrainingPolicy()
        auto_train = snapshot["training_policy__auto_train"]
        quiet = snapshot["training_policy__quiet_seconds"]
        auto_train = defaults.auto_train if auto_train is None else auto_train
        quiet = defaults.quiet_seconds if quiet is None else quiet
        scheduled = snapshot["training_check_at"]
    else:
        policy = TrainingPolicy.objects.filter(project_id=event.project_id).only(
            "auto_train", "quiet_seconds").first() or TrainingPolicy()
        auto_train, quiet, scheduled = policy.auto_train, policy.quiet_seconds, _UNKNOWN
    if auto_train:
        # Soon enough to count towards retrain_every, late enough to coalesce a burst.
        delay = min(POLL_SECONDS, quiet) if quiet > 0 else POLL_SECONDS
        request_check(event.project_id, delay=delay, scheduled=scheduled)


# --- the lease (services/leases.py) -----------------------------------------------------------
new_owner = leases.new_owner


def acquire_lease(project_id: int, owner: str, seconds: float | None = None) -> bool:
    return leases.acquire(project_id, owner, kind="training", seconds=seconds)


def renew_lease(project_id: int, owner: str, seconds: float | None = None) -> bool:
    return leases.renew(project_id, owner, kind="training", seconds=seconds)


def release_lease(project_id: int, owner: str) -> None:
    leases.release(project_id, owner, kind="training")


# --- checking and training ----------------------------------------------------------------------
@dataclass(frozen=True)
class CheckResult:
    outcome: str  # idle | later | busy | trained | failed | skipped
    run: TrainingRun | None = None

    def __str__(self) -> str:
        return self.outcome if self.run is None else f"{self.outcome} run={self.run.pk}"


def check_training(project_id: int) -> CheckResult:
    """The Celery task's body: decide, and train under the lease if due."""
    now = timezone.now()
    Project.objects.filter(pk=project_id, training_check_at__lte=now + timedelta(seconds=0.5)).update(
        training_check_at=None)
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return CheckResult("idle")
    decision = decide(policy_of(project), pending_of(project), now)
    if not decision.train:
        if decision.check_at is not None:
            request_check(project_id, delay=(decision.check_at - now).total_seconds())
            return CheckResult("later")
        return CheckResult("idle")
    return train_now(project, trigger=decision.trigger)


def train_now(project: Project, *, trigger: str, owner: str | None = None,
              read_tasks: Callable[[int], Any] | None = None, reschedule_if_busy: bool = True) -> CheckResult:
    """Train the project now if no other training holds its lease; then look at what is left."""
    owner = owner or new_owner()
    if not acquire_lease(project.pk, owner):
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
            result = _run(project, trigger=trigger, owner=owner, read_tasks=read_tasks)
    finally:
        release_lease(project.pk, owner)
    # Events that came during the training lead to the next check.
    project.refresh_from_db()
    decision = decide(policy_of(project), pending_of(project), timezone.now())
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


def _read_examples(project: Project, read_tasks: Callable[[int], Any] | None):
    backend = backend_for(project.label_config)

    def read():
        tasks = (read_tasks or _annotated_tasks)(project.ls_project_id)
        return examples_from_tasks(backend, tasks)

    return label_studio.with_retries(read, what=f"reading project {project.ls_project_id}'s annotations")


def _annotated_tasks(ls_project_id: int):
    return label_studio.iter_annotated_tasks(ls_project_id, page_size=settings.LABEL_STUDIO_PAGE_SIZE)


def _run(project: Project, *, trigger: str, owner: str, read_tasks) -> CheckResult:
    policy = policy_of(project)
    pending = pending_of(project)
    run = TrainingRun.objects.create(project=project, trigger=trigger, owner=owner,
                                     events_through=pending.through_id, num_events=pending.events)
    logger.info("training_started project=%s run=%s trigger=%s events=%s", project.ls_project_id, run.pk,
                trigger, pending.events)
    asked = trigger in {"start_training", "manual"}
    try:
        if read_tasks is None:
            run.ls_annotation_count = label_studio.with_retries(
                lambda: label_studio.annotation_count(project.ls_project_id), what="counting annotations")
            if not asked and run.ls_annotation_count < policy.min_annotations:
                return _finish(run, TrainingRun.Status.SKIPPED, "skipped", f"{run.ls_annotation_count} "
                               f"annotations in Label Studio; the policy trains from {policy.min_annotations}")
        started = time.perf_counter()
        dataset = _read_examples(project, read_tasks)
        run.timings = {"read": round(time.perf_counter() - started, 3)}
        run.num_annotations = len(dataset.examples)
        if not asked and len(dataset.examples) < policy.min_annotations:
            return _finish(run, TrainingRun.Status.SKIPPED, "skipped", f"{len(dataset.examples)} usable "
                           f"annotations; the policy trains from {policy.min_annotations}")
        latest = _latest_trained(project)
        if not asked and latest is not None and latest.data_digest == dataset.digest:
            return _finish(run, TrainingRun.Status.SKIPPED, "skipped",
                           f"the annotations are the ones {latest.version} learned")
        serving_metrics = project.serving.metrics if project.serving_id and project.serving else None
        version = train_model_version(project=project, examples=dataset.examples,
                                      annotation_ids=dataset.annotation_ids, data_digest=dataset.digest,
                                      promote=False, on_created=lambda v: _attach(run, v), timings=run.timings)
        run.model_version = version
        promote, why = should_promote(policy, version.metrics, serving_metrics)
        if promote:
            promote_version(version=version)
        run.promoted = promote
        return _finish(run, TrainingRun.Status.SUCCEEDED, "trained", why)
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
    logger.info("training_%s project=%s run=%s annotations=%s version=%s promoted=%s %s", outcome,
                run.project.ls_project_id, run.pk, run.num_annotations,
                run.model_version.version if run.model_version else "-", run.promoted, detail)
    return CheckResult(outcome, run)


# --- reconciliation ---------------------------------------------------------------------------
def reconcile() -> dict[str, int]:
    """Beat's periodic pass: re-ask for lost checks, and notice annotations no webhook announced."""
    now = timezone.now()
    asked = noticed = 0
    for project in Project.objects.all():
        lease_live = project.training_lease_until is not None and project.training_lease_until > now
        check_live = project.training_check_at is not None and project.training_check_at > now - timedelta(minutes=5)
        if lease_live or check_live:
            continue
        if label_studio.is_configured() and _annotations_changed_unseen(project):
            WebhookEvent.objects.create(project=project, ls_project_id=project.ls_project_id, action="RECONCILE")
            noticed += 1
        decision = decide(policy_of(project), pending_of(project), now)
        if decision.train or decision.check_at is not None:
            asked += int(request_check(project.pk))
    return {"checks_requested": asked, "changes_noticed": noticed}


def _annotations_changed_unseen(project: Project) -> bool:
    """Label Studio's annotation count differs from what the last run read, and no event says so."""
    last = (TrainingRun.objects.filter(project=project).exclude(ls_annotation_count=None)
            .order_by("-started_at").first())
    if last is None or pending_of(project).events:
        return False
    try:
        count = label_studio.annotation_count(project.ls_project_id)
    except label_studio.LabelStudioError as exc:
        logger.warning("reconcile_count_failed project=%s error=%s", project.ls_project_id, exc)
        return False
    return count != last.ls_annotation_count
