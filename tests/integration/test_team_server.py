"""The team server: docker/serve.sh (what `make server` and docker/compose.yaml run) for real.

A server on a fresh PostgreSQL database receives a training run whose artifacts go through the
server, registers its model under an alias, and a separate process in an empty folder evaluates
`models:/NAME@ALIAS` through it. With MLFLOW_AUTH=basic-auth the right credentials work end to
end and wrong ones are refused. The auth server keeps its runs in SQLite so that one server
serves several tests (auth does not depend on the backend store; PostgreSQL is the first test's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config
from tests.output import the_error
from tests.processes import free_port, stop_group, wait_answering

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
SERVE = ROOT / "docker" / "serve.sh"
ADMIN, PASSWORD = "admin", "team-server-test-password"
TINY = [
    "--dataset", "synthetic:200", "--batch-size", "8", "--epochs", "1",
    "--max-steps-per-epoch", "2", "--warmup-epochs", "1",
    "--lstm-hidden", "8", "--lstm-layers", "1", "--attention-heads", "2",
]  # fmt: skip


class Server:
    """docker/serve.sh as a subprocess, its output in a log file printed at teardown."""

    def __init__(self, root: Path, **env: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.artifacts = root / "artifacts"
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log_path = root / "server.log"
        environment = dict(
            os.environ,
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            MLFLOW_ARTIFACTS_DESTINATION=str(self.artifacts),
            MLFLOW_SERVER_HOST="127.0.0.1",
            MLFLOW_SERVER_PORT=self.url.rsplit(":", 1)[1],
            MLFLOW_SERVER_WORKERS="1",
            **env,
        )
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [str(SERVE)], cwd=root, env=environment, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 150.0) -> None:
        try:
            wait_answering(self.url, self.proc, self.log_path, timeout)
        except RuntimeError as exc:
            pytest.fail(str(exc))

    def stop(self) -> None:
        stop_group(self.proc, grace_s=5)
        # pytest shows a test's captured teardown output only when the test failed
        print(f"--- server log ({self.url}) ---\n{self.log()}")


def client_env(url: str, **extra: str) -> dict[str, str]:
    """The test's environment (its seisbench cache included) pointed at the server."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=url, **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    # mlflow.set_experiment in this process leaves MLFLOW_EXPERIMENT_ID behind: not for a new server
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_EXPERIMENT_ID"):
        if key not in extra:
            env.pop(key, None)
    return env


def seismic_ml(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "seismic_ml", *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def shown(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"


@pytest.fixture
def use_server(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """Points this process's MLflow client at a URL; restores the session's store afterwards."""
    original = os.environ["MLFLOW_TRACKING_URI"]
    # mlflow.set_experiment writes MLFLOW_EXPERIMENT_ID: monkeypatch takes it back afterwards
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)

    def point(url: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        mlflow.set_tracking_uri(url)

    yield point
    mlflow.set_tracking_uri(original)


def test_postgres_server_takes_a_run_and_serves_its_registered_model(
    postgres_url: str, tiny_dataset: str, tmp_path: Path, use_server, launched_auth_server: Server
) -> None:
    server = Server(tmp_path / "server", MLFLOW_BACKEND_STORE_URI=postgres_url)
    try:
        server.wait_healthy()
        use_server(server.url)
        result = train(
            tiny_run_config(epochs=1, max_steps_per_epoch=2),
            MlflowRecorder(experiment="team", register_as="team-amag", alias="champion"),
        )
        run = MlflowClient().get_run(result.run_id)
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
        # the artifacts sit in the server's folder: the client wrote none of them itself
        stored = {p.name for p in server.artifacts.rglob("*") if p.is_file()}
        assert {"model.safetensors", "model_args.json", "history.json"} <= stored
        version = MlflowClient().get_model_version_by_alias("team-amag", "champion")
        assert version.run_id == result.run_id
        # the run is in PostgreSQL, not in a SQLite file beside the server
        engine = sqlalchemy.create_engine(postgres_url)
        try:
            with engine.connect() as conn:
                query = sqlalchemy.text("SELECT status FROM runs WHERE run_uuid = :id")
                assert conn.execute(query, {"id": result.run_id}).scalar_one() == "FINISHED"
        finally:
            engine.dispose()

        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        done = seismic_ml(
            ["eval-mag", "--model-uri", "models:/team-amag@champion"],
            client_env(server.url), elsewhere,
        )  # fmt: skip
        assert done.returncode == 0, shown(done)
        assert "mae" in done.stdout, shown(done)
        evaluations = MlflowClient().search_runs(
            [run.info.experiment_id],
            "tags.`seismic_ml.evaluated_model_uri` = 'models:/team-amag@champion'",
        )
        assert len(evaluations) == 1 and evaluations[0].info.status == "FINISHED"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def launched_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """docker/serve.sh with MLFLOW_AUTH=basic-auth, started (not yet waited for).

    The first test asks for it too, so that the two servers boot side by side.
    """
    root = tmp_path_factory.mktemp("auth_server")
    server = Server(
        root,
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{root / 'mlflow.db'}",
        MLFLOW_AUTH="basic-auth",
        MLFLOW_AUTH_DB_URL=f"sqlite:///{root / 'basic_auth.db'}",
        MLFLOW_AUTH_ADMIN_USERNAME=ADMIN,
        MLFLOW_AUTH_ADMIN_PASSWORD=PASSWORD,
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def auth_server(launched_auth_server: Server) -> Server:
    """The basic-auth server, answering /health: an admin user from the environment."""
    launched_auth_server.wait_healthy()
    return launched_auth_server


@pytest.fixture(scope="module")
def wrong_credentials(
    auth_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> subprocess.CompletedProcess:
    """`seismic-ml train-mag` with a wrong password, run once for the tests that read it."""
    env = client_env(
        auth_server.url, MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD="not-the-password"
    )
    return seismic_ml(["train-mag", *TINY], env, tmp_path_factory.mktemp("wrong"))


def test_basic_auth_right_credentials_train_end_to_end(
    auth_server: Server, tiny_dataset: str, tmp_path: Path
) -> None:
    env = client_env(
        auth_server.url, MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=PASSWORD
    )
    done = seismic_ml(
        ["train-mag", *TINY, "--register-as", "auth-amag", "--alias", "champion"], env, tmp_path
    )
    assert done.returncode == 0, shown(done)
    run_id = next(x for x in done.stdout.splitlines() if x.startswith("run id: "))[8:]

    with pytest.MonkeyPatch.context() as patch:
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            patch.setenv(key, env[key])
        client = MlflowClient(tracking_uri=auth_server.url, registry_uri=auth_server.url)
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        assert client.get_model_version_by_alias("auth-amag", "champion").run_id == run_id

    # and without credentials the same server refuses to say anything about it
    request = urllib.request.Request(f"{auth_server.url}/api/2.0/mlflow/runs/get?run_id={run_id}")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401


def test_basic_auth_wrong_credentials_are_one_line_and_nonzero(
    wrong_credentials: subprocess.CompletedProcess, tiny_dataset: str
) -> None:
    assert wrong_credentials.returncode == 1, shown(wrong_credentials)
    assert "refused the credentials" in the_error(wrong_credentials.stderr)
