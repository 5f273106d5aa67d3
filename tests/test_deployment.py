"""docker-compose.yml is valid and wires the services the production deployment needs."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_file_validates_with_docker_compose():
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose is not installed (.ci/run installs Debian's docker-compose)"
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    result = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, timeout=60, env={**env, "DJANGO_SECRET_KEY": "k" * 50})
    assert result.returncode == 0, result.stderr
    # Production never runs on a key everyone knows: without one the file refuses to start.
    missing = subprocess.run([tool, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                             capture_output=True, text=True, timeout=60, env=env)
    assert missing.returncode != 0 and "DJANGO_SECRET_KEY" in missing.stderr


def test_compose_file_has_the_production_services():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "mlflow", "web", "worker", "worker-scoring", "worker-housekeeping", "beat"} <= set(services)
    # Every queue the service routes work to has a worker consuming it.
    from django.conf import settings

    consumed = {queue for name, service in services.items() if name.startswith("worker")
                for queue in service["command"].split("--queues ")[1].split()[0].split(",")}
    assert set(settings.ALO_QUEUES) <= consumed
    web_env = services["web"]["environment"]
    assert web_env["DATABASE_URL"].startswith("postgresql://")
    assert web_env["CELERY_BROKER_URL"].startswith("redis://")
    assert web_env["MLFLOW_TRACKING_URI"].startswith("http://mlflow")
