"""A project's annotations read back from Label Studio as training examples, and which ones they were."""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from backends import Example, TextClassificationBackend, backend_for
from orchestrator.gateways import label_studio
from orchestrator.learning import annotation_store, audit
from orchestrator.learning.models import Project


@dataclass
class Dataset:
    """Training examples read from Label Studio, and which annotations (at which revision) made them."""

    examples: list[Example] = field(default_factory=list)  # what a version trains on
    task_ids: list[int] = field(default_factory=list)  # the tasks of `examples` (none when tasks have no id)
    audit: list[Example] = field(default_factory=list)  # the audit sample's labels: held out, to measure on
    annotation_ids: list[int] = field(default_factory=list)
    digest: str = ""  # equal digests: same config, same annotations, same revisions


def read_dataset(project: Project) -> Dataset:
    """Every usable annotation of the project, from the annotation store, brought up to Label Studio first
    (what changed since its last check; the whole project on first use). Outages retried, then raised."""
    backend = backend_for(project.label_config)
    annotation_store.sync(project)
    return examples_from_tasks(backend, annotation_store.stored_tasks(project),
                               audit_of=lambda ids: audit.is_audit(project.ls_project_id, ids))


def examples_from_tasks(backend: TextClassificationBackend, tasks: Iterable[Mapping[str, Any]], *,
                        audit_of: Callable[[list[int]], Any] | None = None) -> Dataset:
    """Examples from Label Studio tasks with annotations; with `audit_of` (task ids -> whether each is in
    the audit sample), the audit sample's go to `Dataset.audit` instead of the training examples.

    Rule for several annotations on a task: ground-truth annotations win over the others,
    then the most recently updated one; skips (was_cancelled) and annotations that choose
    nothing the config knows are left out.
    """
    dataset = Dataset()
    revisions: list[str] = []
    fetch = label_studio.fetch_text if label_studio.is_configured() else None
    chosen: list[tuple[dict[str, Any], tuple[str, ...]]] = []  # (the task's id and data, the labels)
    for task in tasks:
        candidates = [
            a for a in task.get("annotations") or ()
            if not a.get("was_cancelled") and backend.annotation_labels(a.get("result") or ()) is not None
        ]
        if not candidates:
            continue
        best = max(candidates, key=lambda a: (bool(a.get("ground_truth")), str(a.get("updated_at") or ""), a.get("id") or 0))
        chosen.append(({"id": task.get("id"), "data": task.get("data")}, backend.annotation_labels(best["result"])))
        if isinstance(best.get("id"), int):
            dataset.annotation_ids.append(best["id"])
        revisions.append(f"{task.get('id')}:{best.get('id')}:{best.get('updated_at')}")
    # Texts behind URLs are read several at a time, as /predict reads them (in order; the first failing task raises).
    texts = backend.texts([task for task, _ in chosen], fetch, threads=settings.URL_FETCH_THREADS)
    held_out = (audit_of([int(task["id"]) for task, _ in chosen]) if audit_of is not None and chosen
                else [False] * len(chosen))
    for text, (task, labels), audited in zip(texts, chosen, held_out):
        (dataset.audit if audited else dataset.examples).append(Example(text=text, labels=labels))
        if not audited and isinstance(task.get("id"), int):
            dataset.task_ids.append(task["id"])
    hasher = hashlib.sha256(backend.config.digest.encode())
    for revision in sorted(revisions):
        hasher.update(b"\n" + revision.encode())
    dataset.digest = hasher.hexdigest()[:32]
    return dataset
