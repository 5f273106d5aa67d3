"""`mlflow server` on a free loopback port with a SQLite store (or the one given) and served artifacts."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Union

import requests

from tests.support.processes import ManagedProcess, free_port, wait_until


class MlflowServer:
    def __init__(self, data_dir: Union[str, os.PathLike[str]], port: Optional[int] = None,
                 startup_timeout: float = 90.0, backend_store_uri: Optional[str] = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.backend_store_uri = backend_store_uri
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.process: Optional[ManagedProcess] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MlflowServer":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1",
             "--backend-store-uri", self.backend_store_uri or f"sqlite:///{self.data_dir / 'mlflow.db'}",
             "--artifacts-destination", str(self.data_dir / "artifacts")],
            log_path=self.data_dir / "mlflow-server.log", name="mlflow-server", cwd=self.data_dir,
        )
        self.process.start()

        def healthy() -> bool:
            if not self.process.running:
                raise self.process.failure("mlflow server exited during start-up")
            try:
                return requests.get(f"{self.url}/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_until(healthy, timeout=self.startup_timeout, interval=0.3, what=f"mlflow server at {self.url}")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
