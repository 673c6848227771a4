"""eval-phase / eval-mag against a real MLflow server: everything resolved from the run."""

from __future__ import annotations

import io
import os
import uuid

import mlflow
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml.cli.evaluation import eval_mag, eval_phase
from seismic_ml.config import DataConfig, RunConfig, TrainConfig
from seismic_ml.evaluation.evaluate import EVALUATED_MODEL_TAG, EVALUATED_RUN_TAG
from seismic_ml.models.configs import AmagV2Config, PhaseNetLSTMConfig
from seismic_ml.tracking.loader import source_run_id
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train

pytestmark = pytest.mark.integration

DATASET = "synthetic:200"
TINY = TrainConfig(epochs=1, max_steps_per_epoch=2, batch_size=8, warmup_epochs=0)


@pytest.fixture(scope="module")
def trained(mlflow_server: str) -> dict:
    """A phase and an uncertainty magnitude model, non-default options, on the real server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        mlflow.set_tracking_uri(mlflow_server)
        experiment = f"eval-{uuid.uuid4().hex[:8]}"
        name = f"seismic-eval-{uuid.uuid4().hex[:8]}"
        data = DataConfig(dataset=DATASET)
        phase_model = PhaseNetLSTMConfig(lstm_hidden_size=8, lstm_bidirectional=False)
        phase = train(
            RunConfig("phasenet_lstm", phase_model, data, TINY), MlflowRecorder(experiment)
        )
        mag_model = AmagV2Config(
            lstm_hidden=8, attention_heads=2, lstm_layers=1, loss="gaussian_nll"
        )
        mag = train(
            RunConfig("amag_v2", mag_model, data, TINY),
            MlflowRecorder(experiment, register_as=name, alias="champion"),
        )
        yield {"experiment": experiment, "phase": phase.run_id, "mag": mag.run_id, "name": name}
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])


def _invoke(command, *args: str):
    mlflow.set_experiment("somewhere-else")  # the evaluation must still land beside its run
    return CliRunner().invoke(command, list(args))


def _eval_run(output: str) -> mlflow.entities.Run:
    run_id = output.split("evaluation run: ")[1].split()[0]
    return MlflowClient().get_run(run_id)


def _artifact_csv(run_id: str, path: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")))


def _artifacts(run_id: str, folder: str = "") -> set[str]:
    return {f.path for f in MlflowClient().list_artifacts(run_id, folder or None)}


def test_eval_phase_with_run_id_alone(tracking_uri, trained):
    result = _invoke(eval_phase, "--run-id", trained["phase"], "--plot")
    assert result.exit_code == 0, result.output
    run = _eval_run(result.output)
    training = MlflowClient().get_run(trained["phase"])
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == training.info.experiment_id
    assert run.data.tags[EVALUATED_RUN_TAG] == trained["phase"]
    assert run.data.tags[EVALUATED_MODEL_TAG] == training.data.tags["seismic_ml.model_uri"]
    assert run.data.params["model.lstm_hidden_size"] == "8"
    assert run.data.params["model.lstm_bidirectional"] == "False"
    assert run.data.params["eval.dataset"] == DATASET and run.data.params["eval.split"] == "test"
    m = run.data.metrics
    for key in ("p_residual_mae_s", "s_residual_std_s", "p_f1_0.1s", "s_recall_0.5s"):
        assert f"test/{key}" in m
    assert 0.0 <= m["test/detection_roc_auc"] <= 1.0
    assert 0.0 < m["baseline/p_recall_0.5s"] <= 1.0  # STA/LTA finds most P onsets
    assert 0.5 < m["baseline/detection_roc_auc"] <= 1.0
    assert "baseline/s_f1_0.5s" not in m
    predictions = _artifact_csv(run.info.run_id, "predictions.csv")
    assert len(predictions) == m["test/n_windows"]
    assert predictions["is_event"].sum() == m["test/p_n_residuals"]
    assert {"plots/pick_residuals.png", "plots/example_windows.png"} <= _artifacts(
        run.info.run_id, "plots"
    )
    assert "detection_roc_auc" in result.output
    # the model's tuned thresholds, or (a model of two steps may have none) the dev split's
    assert run.data.params["eval.tuned_thresholds_from"] in ("model", "dev")
    assert "pick thresholds: fixed 0.3; tuned " in result.output
    for phase in "ps":
        if f"test/{phase}_threshold_tuned" in m:
            assert 0 < m[f"test/{phase}_threshold_tuned"] < 1
            assert 0 <= m[f"test/{phase}_f1_tuned_0.5s"] <= 1


def test_eval_mag_from_registry_alias_logs_metrics_and_baseline(tracking_uri, trained):
    uri = f"models:/{trained['name']}@champion"
    result = _invoke(eval_mag, "--model-uri", uri)
    assert result.exit_code == 0, result.output
    run = _eval_run(result.output)
    assert run.data.tags[EVALUATED_RUN_TAG] == trained["mag"]
    assert run.data.tags[EVALUATED_MODEL_TAG] == uri
    assert run.data.params["model.loss"] == "gaussian_nll"
    m = run.data.metrics
    for key in ("mae", "rmse", "bias", "residual_std", "r2", "frac_within_0.3", "frac_within_0.5"):
        assert f"test/{key}" in m and f"baseline/{key}" in m
    assert 0.0 <= m["test/frac_within_1sigma"] <= m["test/frac_within_2sigma"] <= 1.0
    assert m["baseline/residual_std"] < 0.4  # Wood-Anderson ML on the synthetic set
    version = MlflowClient().get_model_version(trained["name"], "1")
    assert float(version.tags["test/mae"]) == pytest.approx(m["test/mae"], rel=1e-3)
    assert float(version.tags["test/rmse"]) == pytest.approx(m["test/rmse"], rel=1e-3)
    assert version.tags["eval/run_id"] == run.info.run_id
    assert version.tags["model_type"] == "amag_v2" and version.tags["task"] == "magnitude"
    assert version.description.startswith("magnitude model amag_v2 trained on synthetic:200")
    assert "best validation loss" in version.description
    predictions = _artifact_csv(run.info.run_id, "predictions.csv")
    assert len(predictions) == m["test/n_traces"] == m["baseline/n_traces"]
    residual = predictions["pred_magnitude"] - predictions["true_magnitude"]
    assert residual.abs().mean() == pytest.approx(m["test/mae"], rel=1e-5)
    assert (predictions["pred_sigma"] > 0).all()
    assert {"predictions.csv", "magnitude_bins.csv", "metrics.json"} <= _artifacts(run.info.run_id)
    assert not _artifacts(run.info.run_id, "plots")  # no --plot, no figures


def test_registry_version_uri_resolves_to_the_training_run(tracking_uri, trained):
    assert source_run_id(f"models:/{trained['name']}/1") == trained["mag"]
    assert source_run_id(f"models:/{trained['name']}@champion") == trained["mag"]


def test_contradicting_model_option_shows_both_values_and_logs_nothing(tracking_uri, trained):
    client = MlflowClient()
    experiment = client.get_experiment_by_name(trained["experiment"]).experiment_id
    before = len(client.search_runs([experiment]))
    result = _invoke(
        eval_mag, "--run-id", trained["mag"], "--lstm-hidden", "16", "--lstm-layers", "1"
    )
    assert result.exit_code == 1
    assert "--lstm-hidden 16 given, but the run has model.lstm_hidden=8" in result.output
    assert "lstm-layers" not in result.output  # agrees with the run, so no complaint
    assert "Traceback" not in result.output
    assert len(client.search_runs([experiment])) == before


def test_wrong_task_points_to_the_right_command(tracking_uri, trained):
    result = _invoke(eval_mag, "--run-id", trained["phase"])
    assert result.exit_code == 1
    assert "trained a phase model (phasenet_lstm)" in result.output
    assert "seismic-ml eval-phase" in result.output
