"""Faults injected for real: a killed trainer, a stopped tracking server, racing processes,
bad option values. Each test waits on what MLflow shows, never on a guessed delay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import pytest
from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from seismic_ml.cli import cli
from seismic_ml.tracking import local
from seismic_ml.tracking.lost_runs import REASON_TAG
from seismic_ml.tracking.sender import HEARTBEAT_TAG, SPOOL_NAME
from tests.integration.conftest import Server

pytestmark = pytest.mark.integration

TINY = [
    "--dataset", "synthetic:200", "--batch-size", "8", "--max-steps-per-epoch", "3",
    "--lstm-hidden", "8", "--lstm-layers", "1", "--attention-heads", "2",
    "--early-stopping-patience", "0", "--warmup-epochs", "1",
]  # fmt: skip
STEPS_PER_EPOCH = 3
# The injected outage lasts until the trainer has trained this many epochs without the server.
OUTAGE_EPOCHS = 2
GAVE_UP = "tracking server unreachable, spooling metrics"  # the sender's warning


def env_for(url: str, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess against a tracking store (test caches kept)."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=url, **extra)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # the test's experiment comes by name
    return env


def start_cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """`python -m seismic_ml ARGS` in the background, its output kept for failure messages."""
    return subprocess.Popen(
        [sys.executable, "-m", "seismic_ml", *args],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def output_of(proc: subprocess.Popen) -> str:
    """What a finished (or killed) process printed."""
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=60)[0]


class OutputTail:
    """A process's output read as it comes (a thread drains the pipe), for probes to look at."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines = proc, []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        """What the process printed so far."""
        return "".join(self.lines)

    def wait(self, timeout: float) -> str:
        """Everything the process printed, once it has exited."""
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return self.text()


def wait_for(
    probe: Callable[[], Any],
    what: str,
    proc: subprocess.Popen | None = None,
    printed: OutputTail | None = None,
) -> Any:
    """Poll probe until it returns something truthy (bounded); fail with the process output."""
    deadline = time.monotonic() + 180
    proc = printed.proc if printed is not None else proc
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            output = printed.wait(30) if printed is not None else output_of(proc)
            pytest.fail(f"process ended before {what}:\n{output}")
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    detail = printed.text() if printed is not None else output_of(proc) if proc else ""
    pytest.fail(f"timed out waiting for {what}\n{detail}")


def run_named(client: MlflowClient, experiment: str, name: str) -> Run | None:
    """The run of that name in the experiment, once it exists."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs([found.experiment_id], f"attributes.run_name = '{name}'")
    return runs[0] if runs else None


def epochs_logged(client: MlflowClient, experiment: str, name: str, n: int = 1) -> Run | None:
    """The named run once it holds at least n epochs of val/loss."""
    run = run_named(client, experiment, name)
    if run and len(client.get_metric_history(run.info.run_id, "val/loss")) >= n:
        return run
    return None


def steps(client: MlflowClient, run_id: str, key: str) -> list[int]:
    """Every step of a metric's history, duplicates included, in order."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def assert_every_metric_once(client: MlflowClient, run_id: str, epochs: int) -> None:
    """lr and train/loss at every optimizer step, and each epoch metric, exactly once."""
    n_steps = epochs * STEPS_PER_EPOCH
    assert steps(client, run_id, "lr") == list(range(n_steps))
    assert steps(client, run_id, "train/loss") == list(range(n_steps))
    for key in ("val/loss", "train/epoch_loss", "val/mae"):
        assert steps(client, run_id, key) == list(range(1, epochs + 1)), key


def epochs_held(client: MlflowClient, run_id: str) -> int:
    """Epochs a killed run holds: on the server, or in the spool its process left unsent
    (a resume sends the spool first, so those epochs count as done)."""
    return max(max(steps(client, run_id, "val/loss"), default=0), epochs_held_locally(run_id))


def spooled_val_losses(run_id: str) -> list[tuple[int, int]]:
    """(timestamp ms, epoch) of each val/loss waiting in the run's local spool, unsent."""
    spool = local.run_dir(run_id) / SPOOL_NAME
    try:
        lines = spool.read_text().splitlines()
    except OSError:
        return []
    # the last line may be torn mid-write: only complete val/loss lines count
    return [
        (json.loads(line)[2], json.loads(line)[3])
        for line in lines
        if line.startswith('["val/loss"') and line.endswith("]")
    ]


def epochs_held_locally(run_id: str) -> int:
    """The last epoch whose val/loss waits in the run's local spool, unsent (0: none)."""
    return max((epoch for _, epoch in spooled_val_losses(run_id)), default=0)


def epochs_spooled_since(run_id: str, since_s: float) -> int:
    """How many epochs ended (val/loss logged) after since_s and still wait in the spool."""
    return sum(1 for stamp, _ in spooled_val_losses(run_id) if stamp > since_s * 1000)


def invoke(*args: str) -> Any:
    """The CLI in-process, as a user would call it."""
    return CliRunner().invoke(cli, list(args))


def test_killed_trainer_is_found_by_gc_marked_failed_and_resumes(
    tracking_uri: str, tiny_dataset: str, experiment: str
) -> None:
    client = MlflowClient()
    args = ["train-mag", *TINY, "--epochs", "300", "--run-name", "victim"]
    proc = start_cli(args, env_for(tracking_uri))
    run = wait_for(lambda: epochs_logged(client, experiment, "victim"), "a first epoch", proc)
    assert HEARTBEAT_TAG in client.get_run(run.info.run_id).data.tags
    alive = invoke("runs", "gc", "--experiment", experiment)
    assert alive.exit_code == 0 and "0 lost run(s)" in alive.output, alive.output
    proc.kill()  # SIGKILL: no handler runs, the run stays RUNNING
    proc.wait(timeout=30)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"

    def gc_marks_it() -> bool:
        result = invoke("runs", "gc", "--experiment", experiment, "--stale-after", "1s")
        assert result.exit_code == 0, result.output
        return "1 lost run(s) marked FAILED" in result.output

    wait_for(gc_marks_it, "gc to find the lost run")
    lost = client.get_run(run.info.run_id)
    assert lost.info.status == "FAILED"
    assert "no heartbeat" in lost.data.tags[REASON_TAG]
    done = epochs_held(client, run.info.run_id)
    resumed = invoke("train-mag", "--resume", run.info.run_id, "--epochs", str(done + 1))
    assert resumed.exit_code == 0, resumed.output
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert_every_metric_once(client, run.info.run_id, done + 1)


@pytest.mark.parametrize(
    "retries", ["6", "0"], ids=["mlflow-retries-cover-it", "past-the-retry-budget"]
)
def test_training_rides_out_a_stopped_tracking_server(
    on_stoppable: Server, tiny_dataset: str, experiment: str, retries: str
) -> None:
    client = MlflowClient()
    env = env_for(
        on_stoppable.url,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES=retries,
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="1",
        MLFLOW_HTTP_REQUEST_TIMEOUT="2",
    )
    epochs = 40
    proc = start_cli(["train-mag", *TINY, "--epochs", str(epochs), "--run-name", "outage"], env)
    printed = OutputTail(proc)
    run = wait_for(lambda: epochs_logged(client, experiment, "outage"), "a first epoch", proc)
    on_stoppable.signal(signal.SIGSTOP)
    stopped = time.time()
    try:
        # counted by their timestamps: epochs spooled just before the stop do not count
        wait_for(
            lambda: (
                epochs_spooled_since(run.info.run_id, stopped) >= OUTAGE_EPOCHS
                and (retries != "0" or GAVE_UP in printed.text())
            ),
            f"{OUTAGE_EPOCHS} epochs trained while the server is stopped"
            + ("" if retries != "0" else " and MLflow's retries given up"),
            printed=printed,
        )
    finally:
        resumed = time.time()
        on_stoppable.signal(signal.SIGCONT)
    output = printed.wait(timeout=600)
    assert proc.returncode == 0, output + on_stoppable.log()
    assert "Traceback" not in output, output
    final = client.get_run(run.info.run_id)
    assert final.info.status == "FINISHED"
    assert_every_metric_once(client, run.info.run_id, epochs)
    during = [
        m.step
        for m in client.get_metric_history(run.info.run_id, "val/loss")
        if stopped * 1000 < m.timestamp < resumed * 1000
    ]
    assert during, "no epoch finished while the server was stopped: training waited for it"


def test_outage_past_the_limit_stops_in_one_line_and_resumes(
    on_stoppable: Server, tiny_dataset: str, experiment: str
) -> None:
    client = MlflowClient()
    env = env_for(on_stoppable.url, MLFLOW_HTTP_REQUEST_TIMEOUT="2")
    args = ["train-mag", *TINY, "--epochs", "300", "--run-name", "limit"]
    proc = start_cli([*args, "--tracking-outage-limit", "3s"], env)
    run = wait_for(lambda: epochs_logged(client, experiment, "limit"), "a first epoch", proc)
    on_stoppable.signal(signal.SIGSTOP)
    try:
        output = proc.communicate(timeout=300)[0]
    finally:
        on_stoppable.signal(signal.SIGCONT)
    assert proc.returncode == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: tracking server unreachable"), output
    assert "local checkpoint" in lines[-1] and "--resume" in lines[-1], output
    assert "Traceback" not in output, output
    on_stoppable.wait_answering()
    refused = invoke("train-mag", "--resume", run.info.run_id, "--epochs", "1")
    # it says how many epochs the run holds
    assert refused.exit_code == 2, refused.output + on_stoppable.log()
    done = int(refused.output.split("already has ")[1].split()[0])
    mlflow.set_experiment("elsewhere")  # this process last used another experiment
    resumed = invoke("train-mag", "--resume", run.info.run_id, "--epochs", str(done + 2))
    assert resumed.exit_code == 0, resumed.output
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert_every_metric_once(client, run.info.run_id, done + 2)


def test_two_trainings_at_once_on_a_fresh_sqlite_store(tmp_path: Path, tiny_dataset: str) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    args = ["train-mag", *TINY, "--epochs", "1"]
    procs = [start_cli(args, env_for(url), cwd=tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(outputs)


@pytest.mark.parametrize(
    "option, value",
    [("--epochs", "-1"), ("--dropout", "1.5"), ("--batch-size", "0"), ("--learning-rate", "-1")],
)
def test_bad_option_value_is_a_usage_error_before_any_run(
    tracking_uri: str, experiment: str, option: str, value: str
) -> None:
    result = invoke("train-mag", "--dataset", "synthetic:200", option, value)
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert MlflowClient().get_experiment_by_name(experiment) is None  # no run, no experiment


def test_resume_refuses_another_task_and_fewer_epochs(
    tracking_uri: str, tiny_dataset: str, experiment: str
) -> None:
    made = invoke("train-mag", *TINY, "--epochs", "2")
    assert made.exit_code == 0, made.output
    run_id = made.output.split("run id: ")[1].split()[0]
    for args, message in [
        (["train-phase", "--resume", run_id], "trained a magnitude model"),
        (["train-mag", "--resume", run_id, "--epochs", "2"], "already has 2 epochs"),
        (["train-mag", "--resume", run_id, "--epochs", "1"], "already has 2 epochs"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 2, result.output
        assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert MlflowClient().get_run(run_id).info.status == "FINISHED"


def test_read_only_commands_leave_the_run_as_it_was(
    tracking_uri: str, tiny_dataset: str, experiment: str, tmp_path: Path
) -> None:
    made = invoke("train-mag", *TINY, "--epochs", "1")
    run_id = made.output.split("run id: ")[1].split()[0]
    client = MlflowClient()
    client.set_terminated(run_id, "FAILED")  # as a crashed run would be
    before = client.get_run(run_id)
    plotted = invoke("plot-history", "--run-id", run_id, "--out", str(tmp_path))
    evaluated = invoke("eval-mag", "--run-id", run_id, "--max-traces", "8")
    assert plotted.exit_code == 0 and evaluated.exit_code == 0, plotted.output + evaluated.output
    after = client.get_run(run_id)
    assert after.info.status == "FAILED"
    assert after.data.params == before.data.params
    assert after.data.metrics == before.data.metrics
    assert steps(client, run_id, "lr") == [0, 1, 2]


@pytest.mark.parametrize(
    "args",
    [
        ["predict", "--model-uri", "models:/seismic-amag@champion", "event.mseed"],
        ["eval-mag", "--model-uri", "models:/seismic-amag@champion"],
        ["plot-history", "--run-id", "0123456789abcdef"],
    ],
    ids=["predict", "eval-mag", "plot-history"],
)
def test_read_only_command_in_an_empty_folder_creates_no_store(
    tmp_path: Path, args: list[str]
) -> None:
    env = {k: v for k, v in env_for("").items() if not k.startswith("MLFLOW_")}
    proc = start_cli(args, env, cwd=tmp_path)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 1, output
    assert output.strip().splitlines()[-1].startswith("Error: no tracking store here"), output
    assert "MLFLOW_TRACKING_URI" in output
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no mlruns
