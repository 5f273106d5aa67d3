"""The embedded MLflow store is created safely when web and worker processes start together."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CREATE = (
    "import django; django.setup(); "
    "from orchestrator.gateways import mlflow_store; "
    "print(len(mlflow_store._mlflow().MlflowClient().search_experiments()))"
)


def test_processes_starting_together_share_one_new_sqlite_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DATABASE_URL"))}
    env.update({"ALO_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "orchestrator.settings"})
    starters = [subprocess.Popen([sys.executable, "-c", CREATE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(timeout=180), *p.communicate()) for p in starters]
    assert [code for code, _, _ in results] == [0] * 4, [err[-2000:] for _, _, err in results]
    assert {out.strip() for _, out, _ in results} == {"1"}  # the Default experiment, in one healthy store
    assert (tmp_path / "mlflow.db").exists()
