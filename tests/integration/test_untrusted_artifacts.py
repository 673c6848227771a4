"""Whoever can write artifacts to the tracking server cannot run code on the machines reading it.

Runs on the real server get malicious pickles planted where the old code unpickled: the
checkpoint, the run's `model/` folder (an MLflow PyTorch pickle model) and the logged model's
own artifacts. Every reading command either works from the safe artifacts or refuses in one
line; the marker the pickles would write never appears.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import mlflow
import numpy as np
import obspy
import pytest
import torch
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml.cli import cli
from seismic_ml.data.registry import load_dataset
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config
from tests.output import the_error

pytestmark = pytest.mark.integration


class WritesMarker:
    """Unpickles into open(marker, 'w')."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _pickle_model_folder(folder: Path, marker: Path) -> Path:
    """An MLflow PyTorch model (pickle format) whose model file unpickles into the marker."""
    (folder / "data").mkdir(parents=True)
    torch.save(WritesMarker(marker), folder / "data" / "model.pth")
    flavor = {"pytorch_version": str(torch.__version__), "model_data": "data"}
    flavor["serialization_format"] = "pickle"
    mlmodel = {"flavors": {"pytorch": flavor, "python_function": {
        "loader_module": "mlflow.pytorch", "data": "data", "pickle_module_name": "pickle",
    }}}  # fmt: skip
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    (folder / "python_model.pkl").write_bytes((folder / "data" / "model.pth").read_bytes())
    return folder


def _poison(run_id: str, model_uri: str, marker: Path, scratch: Path) -> None:
    """Malicious checkpoint, run model folder, old weights file and logged-model artifacts."""
    client = MlflowClient()
    torch.save({"model": WritesMarker(marker)}, scratch / "last.pt")
    client.log_artifact(run_id, str(scratch / "last.pt"), "checkpoints")
    folder = _pickle_model_folder(scratch / "model", marker)
    client.log_artifacts(run_id, str(folder), "model")
    client.log_artifact(run_id, str(folder / "data" / "model.pth"), "weights")
    client.log_model_artifacts(model_uri.removeprefix("models:/"), str(folder))
    client.set_tag(run_id, "seismic_ml.model_uri", f"runs:/{run_id}/model")


def _event_file(folder: Path) -> tuple[Path, str]:
    """One synthetic trace as miniSEED, and --p-time for its station."""
    dataset = load_dataset("synthetic:200")
    row = int(np.flatnonzero(dataset.metadata["trace_category"] == "earthquake")[0])
    waveform, meta = dataset.get_sample(row)
    start = obspy.UTCDateTime(meta["trace_start_time"])
    stream = obspy.Stream()
    for data, comp in zip(waveform, "ZNE"):
        header = {"network": "SY", "station": meta["station_code"], "channel": f"HH{comp}"}
        stream += obspy.Trace(data.astype(np.int32), {**header, "sampling_rate": 100.0,
                                                       "starttime": start})  # fmt: skip
    path = folder / "event.mseed"
    stream.write(str(path), format="MSEED")
    return path, str(start + meta["trace_P_arrival_sample"] / 100.0)


@pytest.fixture(scope="module")
def poisoned(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A magnitude and a phase run on the server, both poisoned after training."""
    scratch = tmp_path_factory.mktemp("poison")
    marker = scratch / "PWNED"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        mlflow.set_tracking_uri(mlflow_server)
        name = f"poisoned-{uuid.uuid4().hex[:8]}"
        options = MlflowRecorder("poisoned", register_as=name, alias="champion")
        mag = train(tiny_run_config("amag_v2", epochs=1), options)
        phase = train(tiny_run_config("phasenet", epochs=1), MlflowRecorder("poisoned"))
        for result, sub in ((mag, "mag"), (phase, "phase")):
            (scratch / sub).mkdir()
            _poison(result.run_id, result.model_uri, marker, scratch / sub)
        event, p_time = _event_file(scratch)
        yield {"mag": mag.run_id, "phase": phase.run_id, "name": name, "marker": marker,
               "event": event, "p_time": p_time, "scratch": scratch}  # fmt: skip


def _cli(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _lines(output: str) -> list[str]:
    """What the command said, without MLflow's download progress bars (stderr, a tty; the
    `seismic-ml` command turns them off, CliRunner does not) and the blank lines they leave."""
    return [x for x in output.splitlines() if x.strip() and "Downloading artifacts" not in x]


def test_the_planted_pickles_are_live(tracking_uri, poisoned):
    """Control: the old way of reading these artifacts runs the attacker's code."""
    path = mlflow.artifacts.download_artifacts(
        f"runs:/{poisoned['mag']}/checkpoints/last.pt", dst_path=str(poisoned["scratch"] / "dl")
    )
    torch.load(path, weights_only=False)
    assert poisoned["marker"].exists()
    poisoned["marker"].unlink()


def test_resume_refuses_the_checkpoint_in_one_line(tracking_uri, poisoned):
    result = _cli("train-mag", "--resume", poisoned["mag"], "--epochs", "2")
    assert result.exit_code == 1, result.output
    assert "refusing to unpickle" in the_error(result.output)
    assert MlflowClient().get_run(poisoned["mag"]).info.status == "FINISHED"
    assert not poisoned["marker"].exists()


@pytest.mark.parametrize("how", ["--run-id", "runs:/", "models:/"])
def test_eval_mag_works_from_the_safe_artifacts(tracking_uri, poisoned, how):
    run_id = poisoned["mag"]
    ref = {"--run-id": ["--run-id", run_id], "runs:/": ["--model-uri", f"runs:/{run_id}/model"],
           "models:/": ["--model-uri", f"models:/{poisoned['name']}@champion"]}[how]  # fmt: skip
    result = _cli("eval-mag", *ref, "--max-traces", "20")
    assert result.exit_code == 0, result.output
    assert f"run {run_id}" in result.output
    assert not poisoned["marker"].exists()


def test_eval_phase_works_from_the_safe_artifacts(tracking_uri, poisoned):
    result = _cli("eval-phase", "--model-uri", f"runs:/{poisoned['phase']}/model",
                  "--max-traces", "20")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not poisoned["marker"].exists()


def test_predict_with_model_and_picker_from_the_safe_artifacts(tracking_uri, poisoned):
    mag, phase = poisoned["mag"], poisoned["phase"]
    given = _cli("predict", "--model-uri", f"runs:/{mag}/model", poisoned["event"],
                 "--p-time", poisoned["p_time"])  # fmt: skip
    assert given.exit_code == 0, given.output
    picked = _cli("predict", "--model-uri", f"runs:/{mag}/model", "--picker-uri",
                  f"runs:/{phase}/model", "--threshold", "0.0", poisoned["event"])  # fmt: skip
    assert picked.exit_code == 0, picked.output
    assert "picker" in picked.stdout
    assert not poisoned["marker"].exists()


def test_weights_replaced_by_a_pickle_are_refused_in_one_line(tracking_uri, poisoned):
    scratch = poisoned["scratch"] / "swap"
    scratch.mkdir()
    torch.save({"w": WritesMarker(poisoned["marker"])}, scratch / "model.safetensors")
    mlflow.set_experiment("poisoned")
    with mlflow.start_run() as run:
        mlflow.log_params(tiny_run_config("amag_v2").to_params())
        mlflow.log_artifact(str(scratch / "model.safetensors"), "weights")
    result = _cli("eval-mag", "--run-id", run.info.run_id, "--max-traces", "20")
    assert result.exit_code == 1
    lines = _lines(result.output)
    assert len(lines) == 1 and "not a safetensors weights file" in lines[0], result.output
    assert not poisoned["marker"].exists()


def test_a_run_without_safe_artifacts_is_one_line(tracking_uri, poisoned):
    mlflow.set_experiment("poisoned")
    with mlflow.start_run() as old:  # what a run logged before safetensors holds: params only
        mlflow.log_params(tiny_run_config("amag_v2").to_params())
    result = _cli("eval-mag", "--run-id", old.info.run_id)
    assert result.exit_code == 1
    lines = _lines(result.output)
    assert len(lines) == 1 and "predates safe model artifacts" in lines[0], result.output
