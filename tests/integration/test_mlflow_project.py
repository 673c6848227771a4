"""`mlflow run . --env-manager local` against a real server: the handed-over run is reused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MLFLOW = str(Path(sys.executable).with_name("mlflow"))


def mlflow_run(
    tracking_uri: str, entry: str, experiment: str, *params: str
) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLFLOW_TRACKING_URI=tracking_uri)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("MLFLOW_EXPERIMENT_ID", None)
    args = [MLFLOW, "run", str(ROOT), "-e", entry, "--env-manager", "local",
            "--experiment-name", experiment]  # fmt: skip
    for p in params:
        args += ["-P", p]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)


def test_train_mag_entry_point_reuses_the_run_and_accepts_undeclared_params(
    tracking_uri: str, tiny_dataset: str
) -> None:
    client = MlflowClient()
    client.create_experiment("it-project")
    done = mlflow_run(
        tracking_uri, "train_mag", "it-project",
        "model_type=amag_v2", "lstm_hidden=8", "lstm_layers=1", "attention_heads=2",
        "epochs=1", "dataset=synthetic:200", "batch_size=8", "max_steps_per_epoch=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = client.get_experiment_by_name("it-project")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "the code must reuse the run mlflow run created"
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["lstm_hidden"] == "8" and params["model.lstm_hidden"] == "8"
    assert params["model.type"] == "amag_v2" and params["train.batch_size"] == "8"
    assert run.data.tags["seismic_ml.model_uri"].startswith("models:/")
    assert len(client.get_metric_history(run.info.run_id, "lr")) == 2
    assert run.info.run_name.startswith("amag_v2-synthetic200-")  # renamed, not MLflow's random
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    evaluated = mlflow_run(tracking_uri, "eval_mag", "it-project",
                           f"run_id={run.info.run_id}", "max_traces=20")  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert not [line for line in evaluated.stderr.splitlines() if "ignored" in line]
    runs = client.search_runs(
        [experiment.experiment_id], "tags.`seismic_ml.evaluated_run_id` != ''"
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert runs[0].data.tags["seismic_ml.evaluated_run_id"] == run.info.run_id
    assert "test/mae" in runs[0].data.metrics and "baseline/mae" in runs[0].data.metrics
    assert runs[0].data.params["eval.subset"].startswith("20 of")


def test_bad_parameter_fails_the_project_run_with_one_line(tracking_uri: str) -> None:
    done = mlflow_run(tracking_uri, "train_mag", "it-project-bad", "model_type=amag_v2",
                      "lstm_hidden=-4", "dataset=synthetic:200")  # fmt: skip
    assert done.returncode != 0
    assert "--lstm-hidden=-4 is outside its range 1 <= x <= 2048" in done.stderr
    assert "Traceback (most recent call last)" not in done.stderr.split("ExecutionException")[0]


def test_tune_entry_point_makes_the_project_run_the_parent(
    tracking_uri: str, tiny_dataset: str, tmp_path: Path
) -> None:
    client = MlflowClient()
    client.create_experiment("it-project-tune")
    done = mlflow_run(
        tracking_uri, "tune", "it-project-tune",
        "model_type=amag_v2", "n_trials=2", "max_epochs_per_trial=1",
        f"storage=sqlite:///{tmp_path / 'optuna.db'}", "dataset=synthetic:200",
        "max_steps_per_epoch=2", "batch_size=8", "lstm_hidden=8", "lstm_layers=1",
        "attention_heads=2",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = client.get_experiment_by_name("it-project-tune").experiment_id
    runs = client.search_runs([experiment])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    parent = parents[0]
    assert parent.data.params["model_type"] == "amag_v2"  # the -P value mlflow run logged
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert all(c.data.params["model.lstm_hidden"] == "8" for c in children)
    assert parent.info.status == "FINISHED"
    assert "best/value" in parent.data.metrics
