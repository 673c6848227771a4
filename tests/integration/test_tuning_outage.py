"""The Optuna storage (a private PostgreSQL cluster) stops while a worker tunes, then returns.

Shorter than --storage-outage-limit: the worker waits, then finishes its trials. Longer: it
stops with one line, its runs closed; the next worker closes the trial it left.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.integration.pg_cluster import Cluster, private_cluster
from tests.integration.test_tuning import TINY, space_file, study_runs
from tests.integration.test_tuning_faults import wait_for_first_epoch, worker

pytestmark = pytest.mark.integration

OUTAGE_S = 10.0  # how long the database stays down in the survivable outage
EPOCHS = 12  # per trial: trial 0 still trains when the database stops after its first epoch
WORKER_S = 150.0  # deadline for a worker to exit


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A private PostgreSQL cluster this test may stop and start."""
    with private_cluster(tmp_path) as started:
        yield started


def tune_args(tmp_path: Path, cluster: Cluster, dataset: str, study: str) -> list[str]:
    """A tiny amag_v2 study on the cluster, in an MLflow experiment named after it."""
    args = [*TINY, "--dataset", dataset, "--study-name", study]
    args += ["--storage", cluster.url, "--experiment", study]
    return [*args, "--search-space", space_file(tmp_path, "space.json", (1e-3, 5e-3))]


def outputs(logs: list[Path]) -> str:
    """Every worker's output, for assertion messages."""
    return "\n".join(f"--- {log.name}\n{log.read_text()}" for log in logs if log.exists())


def wait_exit(proc: subprocess.Popen) -> int:
    """The worker's exit code (killed after WORKER_S)."""
    try:
        return proc.wait(timeout=WORKER_S)
    finally:
        proc.kill()  # a no-op once it has exited


def wait_for_warning(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until the worker has printed text (it noticed the outage)."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, outputs([log])
        time.sleep(0.2)


def running_runs(experiment: str) -> list[str]:
    """Names of the experiment's runs still RUNNING."""
    client = MlflowClient()
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], "attributes.status = 'RUNNING'")
    return [r.info.run_name for r in runs]


@pytest.mark.postgres
def test_a_worker_waits_out_a_storage_outage_and_finishes_its_trials(
    tracking_uri: str, tiny_dataset: str, cluster: Cluster, tmp_path: Path
) -> None:
    experiment = study = f"outage-{uuid.uuid4().hex[:8]}"
    args = tune_args(tmp_path, cluster, tiny_dataset, study)
    log = tmp_path / "worker.log"
    proc = worker([*args, "--n-trials", "2", "--max-epochs-per-trial", str(EPOCHS)], log)
    try:
        first_run = wait_for_first_epoch(experiment, proc, log)  # trial 0 trains: epoch 1 logged
        cluster.stop()
        down_at, stopped_ms = time.monotonic(), time.time() * 1000
        wait_for_warning(log, "unreachable", proc)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        assert proc.poll() is None, outputs([log])
    finally:
        if not cluster.running():
            cluster.start()
        back_ms = time.time() * 1000
        code = wait_exit(proc)
    out = outputs([log]) + cluster.log()
    assert code == 0, out
    assert "reachable again after" in out and "Traceback" not in out, out
    assert "exceeding max length" not in out, out
    epochs = MlflowClient().get_metric_history(first_run, "val/loss")
    times = [m.timestamp for m in epochs]
    assert min(times) < stopped_ms and max(times) > back_ms, out  # it trained across the outage

    trials = optuna.load_study(study_name=study, storage=cluster.url).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"], out
    parent, children = study_runs(experiment, study)
    assert parent.info.status == "FINISHED", out
    for trial, child in zip(trials, children, strict=True):
        assert child.info.status == "FINISHED", out
        assert child.data.tags["optuna.trial_state"] == "COMPLETE"
        assert child.data.metrics["best/val_loss"] == pytest.approx(trial.value)
        assert trial.user_attrs["mlflow_run_id"] == child.info.run_id
        assert sorted(trial.intermediate_values) == list(range(1, EPOCHS + 1))  # all reported


@pytest.mark.postgres
def test_an_outage_past_the_limit_stops_the_worker_with_one_line(
    tracking_uri: str, tiny_dataset: str, cluster: Cluster, tmp_path: Path
) -> None:
    experiment = study = f"stopped-{uuid.uuid4().hex[:8]}"
    args = tune_args(tmp_path, cluster, tiny_dataset, study)
    logs = [tmp_path / "stopped.log", tmp_path / "next.log"]
    limit = ["--storage-outage-limit", "10s"]
    stopped = worker([*args, *limit, "--n-trials", "2", "--max-epochs-per-trial", "500"], logs[0])
    try:
        wait_for_first_epoch(experiment, stopped, logs[0])
        cluster.stop()
        down_at = time.monotonic()
        code = wait_exit(stopped)
        waited = time.monotonic() - down_at
    finally:
        stopped.kill()  # a no-op once it has exited
        if not cluster.running():
            cluster.start()
    out = outputs(logs[:1])
    assert code == 1 and 10 <= waited < 60, (waited, out)
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "over the --storage-outage-limit of 10 s" in errors[0], out
    assert running_runs(experiment) == [], out  # closed on the way out, the storage still down
    parent, (child,) = study_runs(experiment, study)
    assert parent.info.status == "FAILED" and child.info.status == "FAILED", out
    assert "--storage-outage-limit" in child.data.tags["seismic_ml.failed_reason"], out
    trials = optuna.load_study(study_name=study, storage=cluster.url).trials
    assert [t.state.name for t in trials] == ["RUNNING"], out  # the storage never heard

    nxt = worker([*args, "--n-trials", "1", "--max-epochs-per-trial", "1"], logs[1])
    assert wait_exit(nxt) == 0, outputs(logs)
    trials = optuna.load_study(study_name=study, storage=cluster.url).trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"], outputs(logs)
    assert "--storage-outage-limit" in trials[0].user_attrs["fail_reason"], outputs(logs)
    assert running_runs(experiment) == [], outputs(logs)
    parent, _ = study_runs(experiment, study)
    assert parent.info.status == "FINISHED", outputs(logs)
    assert "seismic_ml.failed_reason" not in parent.data.tags
