"""SQLite write turns: web processes queue for their few writes on a lock instead of in SQLite's busy handler.

Only SQLite needs them (one writer at a time per file); elsewhere a turn is nothing to take.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path

from django.db import connection


class _SqliteWriteTurns:
    """A webhook's writes (its event, the check it schedules) take turns on a lock instead of
    in SQLite's busy handler.

    SQLite admits one writer at a time, and a writer that finds the file locked sleeps in
    its busy handler (1, 2, 5, 10, 15, 20, 25, ... 100 ms between tries) with no queue: under
    a burst a waiter can lose again and again (measured: single acks of 236 ms while the
    median was 10). Threads of one process queue on a threading lock; web processes queue
    on an flock of a file beside the database, which the kernel hands over the moment it is
    released. The worker's rare writes still meet the busy handler.
    """

    def __init__(self) -> None:
        self._threads = threading.Lock()
        self._file = None
        self._pid = 0

    def _lock_file(self):
        """This process's handle on the lock file (flock is per open file), or None for a
        database that is not a file (an in-memory test database has one process)."""
        if self._pid != os.getpid():
            name = str(connection.settings_dict["NAME"])
            path = Path(f"{name}.insert-lock")
            usable = not name.startswith(("file:", ":memory:")) and path.parent.is_dir()
            self._file = open(path, "a+b") if usable else None  # noqa: SIM115 - held for the process
            self._pid = os.getpid()
        return self._file

    def __enter__(self) -> None:
        self._threads.acquire()
        try:
            if self._lock_file() is not None:
                fcntl.flock(self._file, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._file is not None:  # the one __enter__ locked: it changes only under the thread lock
                fcntl.flock(self._file, fcntl.LOCK_UN)
        finally:
            self._threads.release()


_TURNS = _SqliteWriteTurns()


def write_turn():
    """The turn a web request takes for its few writes on SQLite (nothing to take elsewhere)."""
    return _TURNS if connection.vendor == "sqlite" else contextlib.nullcontext()
