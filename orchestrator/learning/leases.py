"""Per-project leases: at most one training and one scoring job per project at a time.

A lease is two columns on Project (`<kind>_lease_owner`, `<kind>_lease_until`), taken by a
conditional UPDATE, renewed by a heartbeat thread while the job runs, and lapsing on its
own when the worker that held it dies.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from orchestrator.learning.models import Project

logger = logging.getLogger(__name__)

KINDS = ("training", "scoring")


def new_owner() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _fields(kind: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise ValueError(f"unknown lease kind {kind!r}")
    return f"{kind}_lease_owner", f"{kind}_lease_until"


def _seconds(seconds: float | None) -> float:
    return settings.ALO_TRAINING_LEASE_SECONDS if seconds is None else seconds


def acquire(project_pk: int, owner: str, *, kind: str, seconds: float | None = None) -> bool:
    owner_field, until_field = _fields(kind)
    now = timezone.now()
    free = Q(**{f"{until_field}__isnull": True}) | Q(**{f"{until_field}__lt": now})
    return bool(Project.objects.filter(pk=project_pk).filter(free).update(
        **{owner_field: owner, until_field: now + timedelta(seconds=_seconds(seconds))}))


def renew(project_pk: int, owner: str, *, kind: str, seconds: float | None = None) -> bool:
    owner_field, until_field = _fields(kind)
    return bool(Project.objects.filter(pk=project_pk, **{owner_field: owner}).update(
        **{until_field: timezone.now() + timedelta(seconds=_seconds(seconds))}))


def release(project_pk: int, owner: str, *, kind: str) -> None:
    owner_field, until_field = _fields(kind)
    Project.objects.filter(pk=project_pk, **{owner_field: owner}).update(**{owner_field: "", until_field: None})


def held_until(project_pk: int, *, kind: str):
    _, until_field = _fields(kind)
    return Project.objects.filter(pk=project_pk).values_list(until_field, flat=True).first()


class Heartbeat:
    """Renews a lease every third of its length while a job runs (on its own DB connection)."""

    def __init__(self, project_pk: int, owner: str, *, kind: str):
        _fields(kind)
        self.project_pk, self.owner, self.kind = project_pk, owner, kind
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{kind}-lease-{project_pk}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = max(0.5, settings.ALO_TRAINING_LEASE_SECONDS / 3)
        try:
            while not self._stop.wait(interval):
                try:
                    if not renew(self.project_pk, self.owner, kind=self.kind):
                        logger.warning("lease_lost kind=%s project_pk=%s owner=%s", self.kind, self.project_pk,
                                       self.owner)
                except Exception:
                    logger.exception("lease_renew_failed kind=%s project_pk=%s", self.kind, self.project_pk)
        finally:
            connection.close()


@contextlib.contextmanager
def holding(project_pk: int, *, kind: str) -> Iterator[bool]:
    """The project's `kind` lease for the block, renewed while it runs, released after; yields False (and
    runs nothing under it) when another holder has it."""
    owner = new_owner()
    if not acquire(project_pk, owner, kind=kind):
        yield False
        return
    try:
        with Heartbeat(project_pk, owner, kind=kind):
            yield True
    finally:
        release(project_pk, owner, kind=kind)
