"""The embedded broker (kombu's filesystem transport) keeps every file under the data folder.

Its exchange tables default to ./control under the working directory, which once ended up
committed at the repository's root.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEND = (
    "import django; django.setup()\n"
    "from orchestrator.celery import app\n"
    "app.send_task('orchestrator.learning.tasks.check_training', args=[1], ignore_result=True)\n"
)


def test_a_message_sent_on_the_filesystem_broker_writes_only_under_the_data_folder(tmp_path):
    data, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABASE_URL", "CELERY_"))}
    env.update({"ALO_DATA_DIR": str(data), "DJANGO_SETTINGS_MODULE": "orchestrator.settings", "PYTHONPATH": str(ROOT)})
    result = subprocess.run([sys.executable, "-c", SEND], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(cwd.iterdir()) == []  # nothing in the working directory
    assert sorted(p.name for p in (data / "broker" / "control").iterdir()) == ["training.exchange"]  # check_training goes to the training queue
    assert len(list((data / "broker" / "queue").iterdir())) == 1  # the message itself
