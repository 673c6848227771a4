"""A real `mlflow server` subprocess on a free loopback port, and PostgreSQL when it answers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from tests.processes import free_port, stop_group, wait_answering

MLFLOW = str(Path(sys.executable).with_name("mlflow"))
POSTGRES = ("127.0.0.1", 5432)


class Server:
    """A real `mlflow server` subprocess in its own process group, with its log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "server.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                MLFLOW, "server",
                "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
                "--artifacts-destination", str(root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2",
            ],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            wait_answering(self.url, self.proc, self.log_path, timeout=120)
        except RuntimeError:
            self.stop()
            raise

    def wait_answering(self) -> None:
        """Return once the server answers (after SIGCONT its workers may be restarting)."""
        wait_answering(self.url, self.proc, self.log_path, timeout=120)

    def log(self) -> str:
        """The server's output so far (for failure messages)."""
        return self.log_path.read_text()[-5000:]

    def signal(self, signum: int) -> None:
        """Send a signal to the whole server (its workers too), e.g. SIGSTOP and SIGCONT."""
        os.killpg(self.proc.pid, signum)

    def stop(self) -> None:
        """Terminate the server and its workers."""
        stop_group(self.proc)
        self._log.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URI of a real MLflow tracking server (SQLite backend, served artifacts) for the session."""
    server = Server(tmp_path_factory.mktemp("mlflow_server"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def tracking_uri(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point this test's MLflow client (and its subprocesses) at the session server."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    yield mlflow_server
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", mlflow_server))


def postgres_answers() -> bool:
    """True when something accepts connections on 127.0.0.1:5432."""
    try:
        with socket.create_connection(POSTGRES, timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database; skips without one (fails if SEISMIC_ML_REQUIRE_POSTGRES=1)."""
    if not postgres_answers():
        message = "PostgreSQL does not answer on 127.0.0.1:5432"
        if os.environ.get("SEISMIC_ML_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " (SEISMIC_ML_REQUIRE_POSTGRES=1)")
        pytest.skip(message)
    import sqlalchemy

    name = f"seismic_ml_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(
        "postgresql+psycopg2://postgres@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def experiment(monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh experiment for this test's runs, for this process and its subprocesses."""
    name = f"faults-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)
    return name


@pytest.fixture(scope="module")
def stoppable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A tracking server of this module's own, which tests stop (SIGSTOP) and continue."""
    server = Server(tmp_path_factory.mktemp("stoppable_server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def on_stoppable(stoppable_server: Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """Point this process's MLflow client at the stoppable server."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stoppable_server.url)
    mlflow.set_tracking_uri(stoppable_server.url)
    yield stoppable_server
    stoppable_server.signal(signal.SIGCONT)
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
