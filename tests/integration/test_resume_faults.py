"""Nothing doubled, nothing lost (#17): two resumes of one run at once, a run whose last epoch
ends while the server is stopped, a full checkpoint disk, a full local tracking store."""

from __future__ import annotations

import errno
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from seismic_ml.tracking import claims
from seismic_ml.tracking.sender import client_retries
from tests.integration.conftest import Server
from tests.integration.test_faults import (
    TINY,
    assert_every_metric_once,
    env_for,
    epochs_logged,
    invoke,
    output_of,
    start_cli,
    wait_for,
)

pytestmark = pytest.mark.integration


def run_id_of(output: str) -> str:
    """The run id a training command printed."""
    return output.split("run id: ")[1].split()[0]


def logged_models(run_id: str) -> list:
    """The models logged from a run (MLflow 3 keeps them as LoggedModel entities)."""
    run = MlflowClient().get_run(run_id)
    return mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        output_format="list",
    )


def test_two_resumes_at_once_one_proceeds(
    tracking_uri: str, tiny_dataset: str, experiment: str
) -> None:
    made = invoke("train-mag", *TINY, "--epochs", "1")
    assert made.exit_code == 0, made.output
    run_id = run_id_of(made.output)
    args = ["train-mag", "--resume", run_id, "--epochs", "3"]
    procs = [start_cli(args, env_for(tracking_uri)) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    report = "\n----\n".join(outputs)
    assert codes == [0, 1], report
    loser = outputs[[p.returncode for p in procs].index(1)]
    lines = [line for line in loser.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in loser, report
    assert any(word in lines[0] for word in ("claimed by", "being resumed by", "heartbeat")), report
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert_every_metric_once(client, run_id, 3)
    assert len(logged_models(run_id)) == 2  # the first training's and the one resume's
    assert sorted(claims.claims(client.get_run(run_id))) == [0, 1]


def test_a_claim_is_taken_once_whoever_races_for_it(tracking_uri: str, experiment: str) -> None:
    """The store's own uniqueness decides: of eight threads claiming the same number, one wins."""
    mlflow.set_experiment(experiment)
    with mlflow.start_run() as run:
        pass
    outcomes: list[str] = []

    def race() -> None:
        try:
            claims.take_claim(run.info.run_id, 1)
            outcomes.append("won")
        except claims.RunClaimed as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("won") == 1, outcomes
    assert all("claimed by" in o for o in outcomes if o != "won"), outcomes
    owner = claims.latest_claim(MlflowClient().get_run(run.info.run_id))
    assert owner is not None and claims.claim_age(owner) < 60


def test_a_run_ending_during_an_outage_finishes_with_a_plain_resume(
    on_stoppable: Server, tiny_dataset: str, experiment: str
) -> None:
    """The server stops during the last epoch: training ends in the limit's time with one line
    saying how to finish; `--resume ID` then uploads best/*, weights and model, FINISHED."""
    client = MlflowClient()
    limit_s = 10
    env = env_for(on_stoppable.url)
    for key in client_retries(limit_s):
        env.pop(key, None)  # the command fits MLflow's retries to its own limit
    args = ["train-mag", *TINY, "--epochs", "4", "--run-name", "ends-in-outage"]
    proc = start_cli([*args, "--tracking-outage-limit", f"{limit_s}s"], env)
    run = wait_for(lambda: epochs_logged(client, experiment, "ends-in-outage", 3), "3 epochs", proc)
    on_stoppable.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        output = proc.communicate(timeout=300)[0]
    finally:
        took = time.monotonic() - stopped
        on_stoppable.signal(signal.SIGCONT)
    assert proc.returncode == 1, output
    assert took < 4 * limit_s, f"{took:.0f} s for a {limit_s} s limit\n{output}"
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    assert "training ended after 4 epochs" in lines[0] and "without --epochs" in lines[0], output
    finished = invoke("train-mag", "--resume", run.info.run_id)
    assert finished.exit_code == 0, finished.output
    final = client.get_run(run.info.run_id)
    assert final.info.status == "FINISHED", finished.output
    assert "best/val_loss" in final.data.metrics
    assert_every_metric_once(client, run.info.run_id, 4)
    assert not client.list_artifacts(run.info.run_id, "weights")  # the logged model holds them
    assert len(logged_models(run.info.run_id)) == 1
    again = invoke("train-mag", "--resume", run.info.run_id)
    assert again.exit_code == 2 and "already has 4 epochs" in again.output, again.output


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 32 MB tmpfs: a disk that fills up for real (root only; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave_bytes: int) -> Path:
    """Fill the disk until about leave_bytes are free, or until it is full: the process under
    test writes beside us, so the free space read first can be gone before the last chunk."""
    filler = disk / "filler"
    left = max(shutil.disk_usage(disk).free - leave_bytes, 0)
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb", buffering=0) as handle:
        while left > 0:
            try:
                left -= handle.write(chunk[: min(left, len(chunk))])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def test_full_checkpoint_disk_fails_in_one_line_and_resumes(
    tracking_uri: str, tiny_dataset: str, experiment: str, small_disk: Path
) -> None:
    env = env_for(tracking_uri, SEISMIC_ML_HOME=str(small_disk / "home"))
    args = ["train-mag", *TINY, "--epochs", "50", "--run-name", "full-disk"]
    proc = start_cli(args, env)
    client = MlflowClient()
    run = wait_for(lambda: epochs_logged(client, experiment, "full-disk", 1), "an epoch", proc)
    filler = fill(small_disk, 4096)  # the next checkpoint (hundreds of kB) cannot be written
    output = proc.communicate(timeout=300)[0] if proc.poll() is None else output_of(proc)
    assert proc.returncode == 1, output
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    assert "cannot write the checkpoint" in lines[0] and "No space left" in lines[0], output
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    filler.unlink()
    done = len(client.get_metric_history(run.info.run_id, "val/loss"))
    resumed = start_cli(["train-mag", "--resume", run.info.run_id, "--epochs", str(done + 1)], env)
    out = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, out
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_full_local_store_stops_in_one_line_without_waiting(
    tiny_dataset: str, small_disk: Path, tmp_path: Path
) -> None:
    """A local SQLite store on a full disk: no 15-minute wait, one line, metrics kept."""
    url = f"sqlite:///{small_disk / 'mlflow.db'}"
    env = env_for(url, SEISMIC_ML_HOME=str(tmp_path / "home"), MLFLOW_EXPERIMENT_NAME="full")
    args = ["train-mag", *TINY, "--epochs", "200", "--run-name", "full-store"]
    proc = start_cli(args, env, cwd=tmp_path)
    client = MlflowClient(url)
    wait_for(lambda: epochs_logged(client, "full", "full-store", 1), "an epoch in the store", proc)
    fill(small_disk, 0)
    started = time.monotonic()
    output = proc.communicate(timeout=600)[0]
    took = time.monotonic() - started
    assert proc.returncode != 0, output
    assert took < 120, f"{took:.0f} s after the disk filled\n{output}"
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in output, output
    assert "refuses writes" in lines[0] or "disk is full" in lines[0], output
