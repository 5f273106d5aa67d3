"""What the loop benchmarks share: the whole stack on loopback, and the result table."""
from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.conftest import Loop, start_loop, stop_loop  # noqa: E402
from tests.support.label_studio import LabelStudioServer  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402
from tests.support.redis import RedisServer  # noqa: E402


@contextlib.contextmanager
def running_stack(name: str, database: str = "sqlite", label_studio_env: dict[str, str] | None = None
                  ) -> Iterator[tuple[LabelStudioServer, Loop]]:
    """Label Studio 1.23.2, Redis, the service and a Celery worker (with beat), stopped on exit.

    `database`: "sqlite" (the embedded default) or "postgresql" (a server started here, as
    docker-compose deploys). `label_studio_env`: extra settings for Label Studio. SIGTERM (e.g. `timeout`) stops everything too: it is turned
    into SystemExit, so `finally` runs.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix=f"alo-bench-{name}-") as tmp:
        tmp = Path(tmp)
        ls = LabelStudioServer(tmp / "label-studio", extra_env=label_studio_env)
        redis = RedisServer(tmp / "redis")
        postgres = PostgresServer(tmp / "postgres") if database == "postgresql" else None
        ls.start()
        redis.start()
        loop = None
        try:
            env = {}
            if postgres is not None:
                postgres.start()
                env["DATABASE_URL"] = postgres.database_url
            loop = start_loop(tmp, redis, ls, env)
            yield ls, loop
        finally:
            if loop is not None:
                stop_loop(loop)
            if postgres is not None:
                postgres.stop()
            redis.stop()
            ls.stop()


def print_table(results: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in results)
    print(f"\n{'measure'.ljust(width)}  value")
    for name, value in results:
        print(f"{name.ljust(width)}  {value}")
