"""Start, watch and stop the external server processes that integration tests need.

Each child runs in its own process group with its output in a log file; stop() (and atexit) kill the whole group.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, TypeVar, Union

T = TypeVar("T")

LOG_TAIL_LINES = 50

# Processes started and not yet stopped; atexit stops them so an interrupted run leaves nothing behind.
_LIVE: "set[ManagedProcess]" = set()
_LIVE_LOCK = threading.Lock()


class ProcessError(RuntimeError):
    """A managed process failed to start, died early, or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on `host` right now (the OS picks it; a race is possible but rare)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Call `predicate` until it returns a truthy value and return that value.

    Exceptions from the predicate count as "not yet" (a server that is still starting refuses connections);
    the last one is chained to the TimeoutError raised after `timeout` seconds. A ProcessError is the
    exception: it means the server died, which waiting won't fix, so it propagates at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except ProcessError:
            raise
        except Exception as exc:  # noqa: BLE001 - "not ready yet" comes in many shapes
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc is not None else ""
            raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {what}{detail}") from last_exc
        time.sleep(interval)


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, state letter) of every process in group `pgid`, zombies included, read from /proc (Linux)."""
    members: list[tuple[int, str]] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue  # exited while we were looking
        # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        state, group = fields[0], int(fields[2])
        if group == pgid:
            members.append((int(entry.name), state))
    return members


def group_exists(pgid: int) -> bool:
    """True while any process (zombies included) is in group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists but belongs to someone else
    return True


def _group_has_live_members(pgid: int) -> bool:
    """True while a non-zombie process is in the group (zombies hold no ports or files and can't be killed)."""
    if not os.path.isdir("/proc"):
        return group_exists(pgid)
    return any(state != "Z" for _, state in group_members(pgid))


class ManagedProcess:
    """One command run in its own session/process group, logging stdout+stderr to `log_path`.

    `stop()` signals the whole group (so grandchildren such as server workers die too), escalates to SIGKILL
    after `stop_timeout` seconds, and is idempotent. `user` runs the command as another OS user (needs root),
    e.g. PostgreSQL, which refuses to run as root.
    """

    def __init__(
        self,
        argv: Sequence[Union[str, os.PathLike[str]]],
        log_path: Union[str, os.PathLike[str]],
        *,
        name: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        cwd: Optional[Union[str, os.PathLike[str]]] = None,
        user: Optional[str] = None,
        stop_signal: int = signal.SIGTERM,
        signal_group: bool = True,
        stop_timeout: float = 10.0,
    ) -> None:
        self.argv = [os.fspath(a) for a in argv]
        self.log_path = Path(log_path)
        self.name = name or Path(self.argv[0]).name
        self.env = dict(env) if env is not None else None
        self.cwd = os.fspath(cwd) if cwd is not None else None
        self.user = user
        # Some servers want a specific signal for a quick clean stop (PostgreSQL: SIGINT = fast shutdown), and
        # only on the leader: their helper processes give SIGINT/SIGTERM other meanings.
        self.stop_signal = stop_signal
        self.signal_group = signal_group
        self.stop_timeout = stop_timeout
        self._popen: Optional[subprocess.Popen[bytes]] = None
        self._stopped = False
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> "ManagedProcess":
        if self._popen is not None:
            raise ProcessError(f"{self.name} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            log.write(f"$ {' '.join(self.argv)}\n".encode())
            log.flush()
            kwargs: dict = {}
            if self.user is not None:
                # Popen switches group then user in the child; extra_groups=[] drops root's supplementary groups.
                kwargs.update(user=self.user, group=_primary_group(self.user), extra_groups=[])
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,  # own session => own process group (pgid == pid) we can kill as a whole
                **kwargs,
            )
        except OSError as exc:
            raise ProcessError(f"could not start {self.name} ({self.argv[0]}): {exc}") from exc
        finally:
            log.close()  # the child has its own copy of the descriptor
        with _LIVE_LOCK:
            _LIVE.add(self)
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ProcessError(f"{self.name} not started")
        return self._popen.pid

    @property
    def pgid(self) -> int:
        # start_new_session makes the child a session and group leader, so the group id is its pid.
        return self.pid

    @property
    def returncode(self) -> Optional[int]:
        return None if self._popen is None else self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines of the log (for error messages)."""
        try:
            with open(self.log_path, "rb") as fh:
                tail = deque(fh, maxlen=lines)
        except OSError as exc:
            return f"<no log at {self.log_path}: {exc}>"
        return b"".join(tail).decode(errors="replace")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def failure(self, message: str) -> ProcessError:
        """A ProcessError carrying `message`, the exit status and the log tail."""
        status = "running" if self.running else f"exited with {self.returncode}"
        return ProcessError(
            f"{self.name}: {message} [{status}; log {self.log_path}]\n"
            f"--- last {LOG_TAIL_LINES} log lines ---\n{self.log_tail()}"
        )

    def check_running(self) -> None:
        """Raise (with the log tail) if the process has exited."""
        if not self.running:
            raise self.failure("exited unexpectedly")

    def wait_ready(
        self, predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1
    ) -> T:
        """wait_until(predicate) that fails at once if the process dies, and puts the log tail in any error."""

        def probe() -> T:
            if not self.running:
                raise self.failure(f"exited while waiting for {what}")
            return predicate()

        try:
            return wait_until(probe, timeout=timeout, interval=interval, what=f"{self.name}: {what}")
        except TimeoutError as exc:
            raise self.failure(str(exc)) from exc

    def stop(self, timeout: Optional[float] = None) -> Optional[int]:
        """Stop the whole process group; idempotent. Returns the leader's exit status."""
        with self._lock:
            if self._popen is None or self._stopped:
                return self.returncode
            grace = self.stop_timeout if timeout is None else timeout
            pgid = self.pgid
            try:
                if self._popen.poll() is None or _group_has_live_members(pgid):
                    self._signal(self.stop_signal, group=self.signal_group)
                    if not self._wait_group_dead(pgid, grace):
                        self._signal(signal.SIGKILL, group=True)
                        if not self._wait_group_dead(pgid, 10.0):
                            raise self.failure(f"process group {pgid} survived SIGKILL")
                    # A leader-only signal may leave helpers behind if the leader died badly: sweep the group.
                    if _group_has_live_members(pgid):
                        self._signal(signal.SIGKILL, group=True)
                        self._wait_group_dead(pgid, 10.0)
                self._popen.wait()
                # Grandchildren orphaned by the leader's death stay zombies until init reaps them (about 1 s
                # here): wait for that too, so that "the group is gone" holds when stop() returns.
                with contextlib.suppress(TimeoutError):
                    wait_until(lambda: not group_exists(pgid), timeout=5.0, interval=0.05, what="zombie reaping")
            finally:
                self._stopped = True
                with _LIVE_LOCK:
                    _LIVE.discard(self)
            return self.returncode

    def _signal(self, sig: int, group: bool) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self.pgid, sig)
            else:
                os.kill(self._popen.pid, sig)

    def _wait_group_dead(self, pgid: int, timeout: float) -> bool:
        assert self._popen is not None
        popen = self._popen

        def dead() -> bool:
            popen.poll()  # reap the leader, or it stays a zombie member of its own group
            return popen.returncode is not None and not _group_has_live_members(pgid)

        try:
            wait_until(dead, timeout=timeout, interval=0.05, what=f"process group {pgid} to exit")
            return True
        except TimeoutError:
            return False

    # -- context manager ---------------------------------------------------------------------------------

    def __enter__(self) -> "ManagedProcess":
        if self._popen is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self._popen.pid if self._popen is not None else None
        return f"<ManagedProcess {self.name} pid={pid} running={self.running}>"


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def stop_all() -> None:
    """Stop every managed process still running (registered with atexit)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for proc in live:
        with contextlib.suppress(Exception):
            proc.stop(timeout=5.0)


atexit.register(stop_all)
