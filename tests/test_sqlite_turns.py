"""Web, worker and management commands share one SQLite file on embedded defaults.

A transaction that reads before it writes (count the versions, then insert the next one) must
not fail with "database is locked" when another process commits in between.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RACE = """
import json, threading, time
import django
django.setup()
from django.db import connection, transaction

with connection.cursor() as c:
    c.execute("CREATE TABLE t (x INTEGER)")
read_done, errors = threading.Event(), []

def read_then_write():
    try:
        with transaction.atomic():
            with connection.cursor() as c:
                c.execute("SELECT COUNT(*) FROM t")
                read_done.set()
                time.sleep(0.5)
                c.execute("INSERT INTO t VALUES (1)")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        read_done.set()
        connection.close()

def write():
    read_done.wait()
    try:
        with connection.cursor() as c:
            c.execute("INSERT INTO t VALUES (2)")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=read_then_write), threading.Thread(target=write)]
for t in threads: t.start()
for t in threads: t.join()
with connection.cursor() as c:
    c.execute("SELECT x FROM t ORDER BY rowid")
    rows = [r[0] for r in c.fetchall()]
print(json.dumps({"errors": errors, "rows": rows}))
"""


def test_a_read_then_write_transaction_waits_for_a_concurrent_writer(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABASE_URL"))}
    env.update({"ALO_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "orchestrator.settings"})
    done = subprocess.run([sys.executable, "-c", RACE], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    # The writer waited for the transaction that held the lock from its BEGIN.
    assert result["rows"] == [1, 2]


TURNS = """
import json, pathlib, sys, time
import django
django.setup()
from orchestrator.sqlite_turns import write_turn

asking = pathlib.Path(sys.argv[2])
if sys.argv[1] == "holder":
    with write_turn():
        print("held", flush=True)
        deadline = time.time() + 60
        while not asking.exists() and time.time() < deadline:  # the waiter is about to ask for its turn
            time.sleep(0.01)
        time.sleep(0.5)
        released = time.time()
    print(json.dumps({"released": released}), flush=True)
else:
    asking.touch()
    with write_turn():
        print(json.dumps({"got": time.time()}), flush=True)
"""


def test_web_processes_take_turns_for_webhook_inserts(tmp_path):
    """Two processes on one SQLite file: the second waits on the first's turn (an flock beside
    the database), not in SQLite's busy handler."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABASE_URL"))}
    env.update({"ALO_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "orchestrator.settings"})
    asking = tmp_path / "asking"
    holder = subprocess.Popen([sys.executable, "-c", TURNS, "holder", str(asking)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # the holder has its turn before the waiter asks
        waiter = subprocess.run([sys.executable, "-c", TURNS, "waiter", str(asking)], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=120)
        assert waiter.returncode == 0, waiter.stderr[-3000:]
        released = json.loads(holder.stdout.readline())["released"]
        got = json.loads(waiter.stdout.strip().splitlines()[-1])["got"]
        assert got >= released  # its turn came only once the holder's ended
        assert (tmp_path / "orchestrator.sqlite3.insert-lock").exists()
    finally:
        holder.wait(timeout=60)
