"""Run a command (the test suite) against a real PostgreSQL started for it, then stop it.

Usage: python tests/with_postgres.py python -m pytest tests/contract tests/integration
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.postgres import PostgresServer  # noqa: E402


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="alo-pg-suite-") as tmp:
        server = PostgresServer(Path(tmp) / "cluster")
        server.start()
        try:
            env = {**os.environ, "ALO_TEST_DATABASE": "postgresql", "DATABASE_URL": server.database_url}
            print(f"PostgreSQL for the suite at {server.database_url.rsplit('@', 1)[-1]}", flush=True)
            return subprocess.call(sys.argv[1:], env=env)
        finally:
            server.stop()


if __name__ == "__main__":
    raise SystemExit(main())
