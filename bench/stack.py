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
from tests.support.redis import RedisServer  # noqa: E402


@contextlib.contextmanager
def running_stack(name: str) -> Iterator[tuple[LabelStudioServer, Loop]]:
    """Label Studio 1.23.2, Redis, the service and a Celery worker (with beat), stopped on exit.

    SIGTERM (e.g. `timeout`) stops them too: it is turned into SystemExit, so `finally` runs.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix=f"alo-bench-{name}-") as tmp:
        tmp = Path(tmp)
        ls = LabelStudioServer(tmp / "label-studio")
        redis = RedisServer(tmp / "redis")
        ls.start()
        redis.start()
        loop = None
        try:
            loop = start_loop(tmp, redis, ls)
            yield ls, loop
        finally:
            if loop is not None:
                stop_loop(loop)
            redis.stop()
            ls.stop()


def print_table(results: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in results)
    print(f"\n{'measure'.ljust(width)}  value")
    for name, value in results:
        print(f"{name.ljust(width)}  {value}")
