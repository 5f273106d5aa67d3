"""docker-compose.yml is valid and wires the services the production deployment needs."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
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


@pytest.mark.integration
def test_compose_mlflow_starts_on_its_postgresql_store_with_the_services_own_packages(tmp_path):
    """The compose file's MLflow runs from the service's image (these packages) on the PostgreSQL store its
    command names: really started here, on a real PostgreSQL, a run logged and read back."""
    import mlflow

    from tests.support.mlflow_server import MlflowServer
    from tests.support.postgres import PostgresServer, find_bindir

    try:
        find_bindir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mlflow_service = compose["services"]["mlflow"]
    assert mlflow_service["image"] == compose["services"]["web"]["image"]  # our image: it has the driver
    uri = mlflow_service["command"].split("--backend-store-uri ")[1].split()[0]
    scheme = uri.split("://")[0]
    assert scheme == "postgresql+psycopg"
    postgres = PostgresServer(tmp_path / "pg").start()
    server = None
    try:
        store = postgres.database_url.replace("postgresql://", f"{scheme}://")
        server = MlflowServer(tmp_path / "mlflow", backend_store_uri=store).start()
        mlflow.set_tracking_uri(server.url)
        experiment = mlflow.set_experiment("compose-check")
        with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
            mlflow.log_metric("audit_macro_f1", 0.9)
        assert mlflow.get_run(run.info.run_id).data.metrics == {"audit_macro_f1": 0.9}
    finally:
        if server is not None:
            server.stop()
        postgres.stop()
        mlflow.set_tracking_uri(None)
