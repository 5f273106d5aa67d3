"""Run a real Label Studio (pinned version, own virtualenv, SQLite) on a free loopback port for integration tests.

Measured on this 2-core machine (start() until /health is UP and the token works):
- cold start on an empty data dir, running all migrations itself: 44-48 s (almost all of it `migrate`);
- the same from the migrated-database template (default; the template is built once per cache, ~48 s): ~5 s;
- warm start on a data dir used before: ~4.5 s; stop(): ~0.05 s; installing the virtualenv: ~75 s, 1 GB.
"""

from __future__ import annotations

import fcntl
import json as jsonlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional, Union

if __package__:
    from .processes import ManagedProcess, ProcessError, free_port, port_is_open
else:  # run as a script (see main()): this file's directory is sys.path[0]
    from processes import ManagedProcess, ProcessError, free_port, port_is_open  # type: ignore[no-redef]

LABEL_STUDIO_VERSION = "1.23.2"

DEFAULT_USERNAME = "alo@example.com"
DEFAULT_PASSWORD = "alo-test-password"

# Environment passed through from the test runner. Everything else is dropped on purpose: Label Studio reads
# most settings from plain variable names as well as LABEL_STUDIO_*-prefixed ones (HOST, PORT, DEBUG, USERNAME,
# DJANGO_DB, ...), and DJANGO_SETTINGS_MODULE from pytest-django would make it load *our* settings.
_PASSTHROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "TEMP", "TMP")

# Settings for a local, offline test instance. Values from Label Studio 1.23.2's core/settings/*.py.
LABEL_STUDIO_TEST_ENV: dict[str, str] = {
    # Allow ML backend and webhook URLs on 127.0.0.1 (otherwise 403 "URL resolves to a reserved network address").
    "ML_BLOCK_LOCAL_IP": "false",
    "SSRF_PROTECTION_ENABLED": "false",
    # No error reports to sentry.io (the community settings default to a public DSN; empty disables it).
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
    # No usage telemetry POSTs to tele.labelstud.io and no "latest version" look-up on PyPI.
    "COLLECT_ANALYTICS": "false",
    "LATEST_VERSION_CHECK": "false",
}

# Label Studio's feature flag (read from an environment variable of the same name) for its
# memory-efficient prediction import: counters recomputed for the imported tasks only, not for
# every task of the project. Off by default in 1.23.2; the README recommends it for large projects.
MEMORY_EFFICIENT_IMPORT = "fflag_fix_back_4620_memory_efficient_predictions_import_08012025_short"


class LabelStudioAPIError(RuntimeError):
    """A Label Studio REST call answered with an error status."""

    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {body if status >= 500 else body[:2000]}")
        self.method = method
        self.url = url
        self.status = status
        self.body = body


# -- virtualenv ------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """$ALO_CACHE_DIR, default ~/.cache/alo: where large, reusable test tooling lives."""
    return Path(os.environ.get("ALO_CACHE_DIR") or Path.home() / ".cache" / "alo").expanduser()


def venv_dir() -> Path:
    return cache_dir() / f"label-studio-{LABEL_STUDIO_VERSION}"


def label_studio_bin(venv: Optional[Path] = None) -> Path:
    return (venv or venv_dir()) / "bin" / "label-studio"


def _marker(venv: Path) -> Path:
    # Written only after a successful install, so an interrupted install is redone next time.
    return venv / ".alo-install-complete"


def ensure_venv(venv: Optional[Path] = None, timeout: float = 1800.0) -> Path:
    """Create the Label Studio virtualenv unless it is complete already; returns its directory.

    Safe to call from several processes at once: a lock file serialises installs, and the second caller
    finds the marker written by the first. A venv that has the entry point but no marker (installed by hand,
    or interrupted) gets a `pip install`, which is quick and offline when everything is already there.
    """
    venv = venv or venv_dir()
    if _marker(venv).exists() and label_studio_bin(venv).exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / f"{venv.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # blocks while another process installs
        try:
            if _marker(venv).exists() and label_studio_bin(venv).exists():
                return venv
            _marker(venv).unlink(missing_ok=True)
            python = venv / "bin" / "python"
            if not python.exists():
                _run([sys.executable, "-m", "venv", str(venv)], timeout=300)
            _run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                 f"label-studio=={LABEL_STUDIO_VERSION}"],
                timeout=timeout,
            )
            if not label_studio_bin(venv).exists():
                raise RuntimeError(f"pip finished but {label_studio_bin(venv)} is missing")
            _marker(venv).write_text(f"label-studio=={LABEL_STUDIO_VERSION}\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return venv


def _run(argv: list[str], timeout: float) -> None:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.decode(errors="replace").splitlines()[-50:])
        raise RuntimeError(f"{' '.join(argv)} failed with {proc.returncode}:\n{tail}")


# -- environment and database template ---------------------------------------------------------------------


def label_studio_env(data_dir: Path, extra_env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The environment Label Studio runs with: a small pass-through, LABEL_STUDIO_TEST_ENV, then `extra_env`."""
    env = {k: os.environ[k] for k in _PASSTHROUGH_ENV if k in os.environ}
    env.update(LABEL_STUDIO_TEST_ENV)
    # Also given as --data-dir, but Label Studio's argument parser imports its settings before applying that
    # flag, so without the variable every run also creates ~/.local/share/label-studio.
    env["LABEL_STUDIO_BASE_DATA_DIR"] = str(data_dir)
    # It also writes an analytics id to appdirs' user_config_dir (~/.config/label-studio/user_id), even with
    # analytics off: pointing the XDG dirs into data_dir keeps every write inside it.
    for var, sub in (("XDG_CONFIG_HOME", "xdg-config"), ("XDG_CACHE_HOME", "xdg-cache"),
                     ("XDG_DATA_HOME", "xdg-data")):
        env[var] = str(data_dir / sub)
    env["PYTHONUNBUFFERED"] = "1"  # so the log is current when we quote it in an error
    env.update(extra_env or {})
    return env


def database_template(venv: Optional[Path] = None) -> Path:
    """A label_studio.sqlite3 with every migration applied, built once under the cache dir and then copied.

    Migrating a fresh SQLite database is ~90% of a cold start (~45 s here), the same for every test. The
    template holds the schema only (no user, no secret key), so a copy behaves like a fresh install.
    """
    venv = ensure_venv(venv)
    template = cache_dir() / f"label-studio-{LABEL_STUDIO_VERSION}-db-template" / "label_studio.sqlite3"
    if template.exists():
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    with open(template.parent.parent / f"{template.parent.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if template.exists():
                return template
            with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
                build_dir = Path(tmp) / "data"
                # Label Studio migrates the database before running any command, `version` included.
                proc = subprocess.run(
                    [str(label_studio_bin(venv)), "version", "--data-dir", str(build_dir)],
                    env=label_studio_env(build_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600,
                )
                built = build_dir / "label_studio.sqlite3"
                if proc.returncode != 0 or not built.exists():
                    tail = "\n".join(proc.stdout.decode(errors="replace").splitlines()[-50:])
                    raise RuntimeError(f"building the Label Studio database template failed ({proc.returncode}):"
                                       f"\n{tail}")
                os.replace(built, template)  # atomic: readers never see half a file
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return template


# -- server ----------------------------------------------------------------------------------------------


class LabelStudioServer:
    """A Label Studio process with one user whose legacy API token is `token`.

    `extra_env` adds or overrides Label Studio settings (e.g. {"WEBHOOK_TIMEOUT": "5"}).
    """

    def __init__(
        self,
        data_dir: Union[str, os.PathLike[str]],
        port: Optional[int] = None,
        *,
        username: str = DEFAULT_USERNAME,
        password: str = DEFAULT_PASSWORD,
        token: Optional[str] = None,
        extra_env: Optional[Mapping[str, str]] = None,
        venv: Optional[Path] = None,
        use_db_template: bool = True,
        startup_timeout: float = 120.0,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.username = username
        self.password = password
        self.token = token or secrets.token_hex(20)
        # Label Studio ignores a --user-token of 5 characters or fewer (it prints a note and keeps a random one);
        # DRF token keys are at most 40.
        if not 5 < len(self.token) <= 40:
            raise ValueError("token must be 6 to 40 characters long")
        self.extra_env = dict(extra_env or {})
        self.venv = venv
        self.use_db_template = use_db_template
        self.startup_timeout = startup_timeout
        self.process: Optional[ManagedProcess] = None
        self.startup_seconds: Optional[float] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "label-studio.log"

    def environment(self) -> dict[str, str]:
        return label_studio_env(self.data_dir, self.extra_env)

    def command(self) -> list[str]:
        return [
            str(label_studio_bin(self.venv)),
            "start",
            "-b",  # --no-browser
            "--data-dir", str(self.data_dir),
            "--internal-host", "127.0.0.1",
            "-p", str(self.port),
            "--host", self.url,
            "--username", self.username,
            "--password", self.password,
            "--user-token", self.token,
            "--enable-legacy-api-token",
        ]

    def start(self) -> "LabelStudioServer":
        if self.process is not None and self.process.running:
            raise ProcessError("Label Studio already started")
        ensure_venv(self.venv)  # instant once installed; installs (~75 s) on a fresh machine
        if port_is_open(self.port):
            # Label Studio would silently move to the next free port; fail loudly instead.
            raise ProcessError(f"port {self.port} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        database = self.data_dir / "label_studio.sqlite3"
        if self.use_db_template and not database.exists():
            shutil.copyfile(database_template(self.venv), database)
        began = time.monotonic()
        self.process = ManagedProcess(
            self.command(), self.log_path, name="label-studio", env=self.environment(), cwd=self.data_dir
        ).start()
        try:
            self.process.wait_ready(self._healthy, timeout=self.startup_timeout, what=f"GET {self.url}/health")
            self.startup_seconds = time.monotonic() - began
            self.api("GET", "/api/projects")  # the token must work, or every test would fail confusingly
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if "is in use." in self.process.log_text():
            raise self.process.failure(f"port {self.port} was taken; Label Studio moved to another port")
        return self.health().get("status") == "UP"

    def health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
            return jsonlib.loads(resp.read() or b"{}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def __enter__(self) -> "LabelStudioServer":
        if self.process is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- REST ------------------------------------------------------------------------------------------

    def api(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
        headers: Optional[Mapping[str, str]] = None,
        timeout: float = 60.0,
    ) -> Any:
        """Call the REST API with the user's token; returns the parsed JSON (None for an empty body).

        Raises LabelStudioAPIError (status + body) on any 4xx/5xx answer.
        """
        url = self.url + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params, doseq=True)
        body = None if json is None else jsonlib.dumps(json).encode()
        req = urllib.request.Request(url, data=body, method=method.upper())
        req.add_header("Authorization", f"Token {self.token}")
        req.add_header("Accept", "application/json")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            if exc.code >= 500 and self.process is not None:
                # Its 500 page is HTML that says nothing; the traceback is in its log.
                body = f"(its log's last lines follow)\n{self.process.log_tail()}"
            raise LabelStudioAPIError(method.upper(), url, exc.code, body) from None
        return jsonlib.loads(raw) if raw.strip() else None


__all__ = [
    "LABEL_STUDIO_VERSION",
    "LABEL_STUDIO_TEST_ENV",
    "LabelStudioAPIError",
    "LabelStudioServer",
    "MEMORY_EFFICIENT_IMPORT",
    "cache_dir",
    "database_template",
    "ensure_venv",
    "label_studio_bin",
    "label_studio_env",
    "venv_dir",
]


def main(argv: Optional[list[str]] = None) -> int:
    """`python3 tests/support/label_studio.py ensure-venv|db-template`: prepare the cache ahead of a test run."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["ensure-venv", "db-template"],
                        help="install the Label Studio virtualenv; or also build the migrated-database template")
    args = parser.parse_args(argv)
    began = time.monotonic()
    print(ensure_venv() if args.command == "ensure-venv" else database_template(), flush=True)
    print(f"done in {time.monotonic() - began:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
