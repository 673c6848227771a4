"""A tuning worker killed with -9 mid-trial: the next worker on the host cleans up after it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.integration.test_tuning import TINY, TUNE_SCRIPT, space_file, study_runs

pytestmark = pytest.mark.integration

FIRST_EPOCH_S = 90.0  # deadline for the first trial's first val/loss (worker start included)


def worker(args: list[str], log: Path) -> subprocess.Popen:
    """A `seismic-ml tune` subprocess writing its output to log."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-c", TUNE_SCRIPT, *args],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip


def wait_for_first_epoch(experiment: str, proc: subprocess.Popen, log: Path) -> str:
    """The run id of trial 0 once it has logged a val/loss (fails if the worker exits first)."""
    client = MlflowClient()
    deadline = time.monotonic() + FIRST_EPOCH_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"worker exited early:\n{log.read_text()}"
        exp = client.get_experiment_by_name(experiment)
        runs = exp and client.search_runs([exp.experiment_id], "tags.`optuna.trial_number` = '0'")
        if runs and client.get_metric_history(runs[0].info.run_id, "val/loss"):
            return runs[0].info.run_id
        time.sleep(0.5)
    pytest.fail(f"no val/loss after {FIRST_EPOCH_S} s:\n{log.read_text()}")


def test_killed_worker_trial_fails_and_parent_finishes(
    tracking_uri: str, tiny_dataset: str, tmp_path: Path
) -> None:
    experiment, study = f"tune-{uuid.uuid4().hex[:8]}", "killed"
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    args = [*TINY, "--dataset", tiny_dataset, "--study-name", study, "--storage", storage]
    args += ["--experiment", experiment, "--n-trials", "1"]
    args += ["--search-space", space_file(tmp_path, "space.json", (1e-3, 5e-3))]
    logs = [tmp_path / "killed.log", tmp_path / "restarted.log"]
    victim = worker([*args, "--max-epochs-per-trial", "500"], logs[0])
    try:
        killed_run = wait_for_first_epoch(experiment, victim, logs[0])
    finally:
        victim.kill()  # SIGKILL: no handler runs, nothing is closed
        victim.wait()
    restarted = worker([*args, "--max-epochs-per-trial", "1"], logs[1])
    try:
        restarted.wait(timeout=120)
    finally:
        restarted.kill()  # a no-op once it has exited
    outputs = "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs)
    assert restarted.returncode == 0, outputs

    trials = optuna.load_study(study_name=study, storage=storage).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"], outputs
    reason = trials[0].user_attrs.get("fail_reason", "")
    assert f":{victim.pid} is gone (found by worker " in reason, outputs
    parent, children = study_runs(experiment, study)
    assert parent.info.status == "FINISHED", outputs
    killed, new = children
    assert killed.info.run_id == killed_run and killed.info.status == "FAILED", outputs
    assert killed.data.tags["optuna.trial_state"] == "FAIL"
    assert killed.data.tags["seismic_ml.failed_reason"] == reason
    assert new.info.status == "FINISHED" and new.data.tags["optuna.trial_state"] == "COMPLETE"
    experiment_id = parent.info.experiment_id
    running = MlflowClient().search_runs([experiment_id], "attributes.status = 'RUNNING'")
    assert running == [], outputs
