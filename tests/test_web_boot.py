"""A web process prepares at boot what its first webhook would otherwise pay for (gunicorn_conf, celery)."""
from __future__ import annotations

from pathlib import Path

import pytest


def test_web_processes_connect_to_the_broker_before_their_first_webhook(tmp_path):
    """gunicorn's post_worker_init warms the producer, so the first check a webhook schedules
    does not pay for the connection while the process's other requests wait. A fresh process,
    as a web worker is: the producer the next apply_async gets is connected only after it."""
    import os
    import subprocess
    import sys

    code = (
        "import django; django.setup()\n"
        "from orchestrator.celery import app, warm_producer\n"
        "def connected():\n"
        "    with app.producer_or_acquire() as producer:\n"
        "        return producer.connection.connected\n"
        "print(connected(), end=' '); warm_producer(); print(connected())\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "orchestrator.settings", "ALO_DATA_DIR": str(tmp_path)}
    env.pop("CELERY_BROKER_URL", None)  # the embedded broker: no server needed
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True"], result.stdout


@pytest.mark.django_db(transaction=True)
def test_every_request_thread_of_a_web_worker_is_connected_before_its_first_request():
    """gunicorn's post_worker_init opens each gthread request thread's database connection,
    so no webhook ack pays for one (300 ms measured on PostgreSQL under load)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from django.db import connection

    from orchestrator import gunicorn_conf

    def threads_connected(pool, n):  # one probe per thread, as the warm-up places its tasks
        barrier = threading.Barrier(n)

        def probe():
            barrier.wait(timeout=10)
            connected = connection.connection is not None
            barrier.wait(timeout=10)  # every thread has looked: now each closes its own
            connection.close()
            return threading.get_ident(), connected

        return [f.result(timeout=30) for f in [pool.submit(probe) for _ in range(n)]]

    with ThreadPoolExecutor(max_workers=4) as cold:
        assert [connected for _, connected in threads_connected(cold, 4)] == [False] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        gunicorn_conf._connect_request_threads(SimpleNamespace(tpool=pool, cfg=SimpleNamespace(threads=4)))
        seen = threads_connected(pool, 4)
        assert len({ident for ident, _ in seen}) == 4 and all(connected for _, connected in seen)


def test_each_instance_has_a_gunicorn_control_socket_of_its_own(tmp_path):
    """Not gunicorn's default in the home folder, which every instance of the user would share: the data
    folder's (or, when that path is too long for a Unix socket, one named after it in the temp folder)."""
    from orchestrator import gunicorn_conf

    short, other = gunicorn_conf._control_socket(tmp_path / "a"), gunicorn_conf._control_socket(tmp_path / "b")
    assert short == str(tmp_path / "a" / "gunicorn.ctl") and other != short
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5)
    long_one, long_two = gunicorn_conf._control_socket(deep / "x"), gunicorn_conf._control_socket(deep / "y")
    assert long_one != long_two and all(len(p.encode()) < 108 and "alo-gunicorn-" in p for p in (long_one, long_two))
    assert gunicorn_conf.control_socket == gunicorn_conf._control_socket(gunicorn_conf._settings.DATA_DIR)
    assert gunicorn_conf.graceful_timeout <= 5
