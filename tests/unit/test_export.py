"""`seismic-ml export`: seisbench's format read by seisbench, ONNX run by onnxruntime, recorded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import seisbench.models as sbm
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml import model_files
from seismic_ml.cli.evaluation import predict
from seismic_ml.cli.export import export
from seismic_ml.models.registry import build_model, model_types
from seismic_ml.tracking.loader import load_model
from tests.conftest import tiny_run_config
from tests.unit.test_predict import event_file, read_table

LSTM_VARIANTS = {
    "phasenet_lstm": "seismic_ml.models.phasenet_lstm.PhaseNetLSTM",
    "phasenet_conv_lstm": "seismic_ml.models.phasenet_conv_lstm.PhaseNetConvLSTM",
}
MAGNITUDE_CLASSES = {
    "phasenet_mag": "seismic_ml.models.phasenet_mag.PhaseNetMag",
    "eqtransformer_mag": "seismic_ml.models.eqtransformer_mag.EQTransformerMag",
    "amag_v2": "seismic_ml.models.amag_v2.MagnitudeNet",
}


def _log(model_type: str, folder: Path, thresholds: dict | None = None) -> str:
    """A tiny untrained model of model_type logged as training logs it; its run id."""
    cfg = tiny_run_config(model_type)
    torch.manual_seed(0)
    model = build_model(model_type, cfg.model).eval()
    mlflow.set_experiment("export-tests")
    with mlflow.start_run() as run:
        mlflow.log_params(cfg.to_params())
        model_files.write_model_files(model, cfg, folder, thresholds)
        mlflow.log_artifacts(str(folder), model_files.WEIGHTS_DIR)
    return run.info.run_id


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A logged run per model type (the phasenet with tuned thresholds)."""
    tuned = {"phasenet": {"P": 0.05, "S": 0.9}}  # no S peak of an untrained picker reaches 0.9
    return {t: _log(t, tmp_path_factory.mktemp(t), tuned.get(t)) for t in model_types()}


@pytest.fixture(autouse=True)
def _no_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    """No download progress bars in the output, as `seismic-ml` sets it."""
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two stations of one synthetic event in one miniSEED file."""
    return event_file(tmp_path_factory)


def _export(*args: object):
    return CliRunner().invoke(export, [str(a) for a in args])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _export_tag(run_id: str, fmt: str) -> dict:
    return json.loads(MlflowClient().get_run(run_id).data.tags[f"seismic_ml.export.{fmt}"])


@torch.no_grad()
def _same_outputs(a: torch.nn.Module, b: torch.nn.Module, in_samples: int) -> None:
    x = torch.randn(2, 3, in_samples, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a(x), b(x), atol=1e-6, rtol=0)


def _picks(rows) -> set:
    return {(station, phase, time, round(float(p), 4)) for station, phase, time, p in rows}


def test_phasenet_in_seisbench_format_is_seisbench_phasenet_with_our_picks(runs, event, tmp_path):
    run_id = runs["phasenet"]
    client = MlflowClient()
    client.create_registered_model("export-picker")
    client.create_model_version("export-picker", f"runs:/{run_id}/weights", run_id=run_id)
    base = tmp_path / "picker"
    result = _export("--model-uri", "models:/export-picker/1", "--format", "seisbench",
                     "--out", base)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"load: seisbench.models.PhaseNet.load('{base}').eval()" in result.stderr
    loaded = sbm.PhaseNet.load(str(base)).eval()
    assert type(loaded) is sbm.PhaseNet  # seisbench's own class, no seismic_ml code
    ours = load_model("models:/export-picker/1").module
    _same_outputs(loaded, ours, 3001)
    assert loaded.default_args == {"P_threshold": 0.05, "S_threshold": 0.9}  # tuned ones

    given = CliRunner().invoke(predict, ["--model-uri", run_id, str(event["path"]),
                                         "--threshold", "0.1"])  # fmt: skip
    assert given.exit_code == 0, given.output
    table = read_table(given.stdout)
    ours = _picks(zip(table["station"], table["phase"], table["time"], table["probability"]))
    classified = loaded.classify(event["stream"].copy(), P_threshold=0.1, S_threshold=0.1).picks
    theirs = [(p.trace_id.split(".")[1], p.phase, str(p.peak_time), p.peak_value)
              for p in classified]  # fmt: skip
    assert _picks(theirs) == ours and set(table["phase"]) == {"P", "S"}

    default = CliRunner().invoke(predict, ["--model-uri", run_id, str(event["path"])])
    table = read_table(default.stdout)
    ours = _picks(zip(table["station"], table["phase"], table["time"], table["probability"]))
    classified = loaded.classify(event["stream"].copy()).picks  # at its default_args thresholds
    theirs = [(p.trace_id.split(".")[1], p.phase, str(p.peak_time), p.peak_value)
              for p in classified]  # fmt: skip
    assert _picks(theirs) == ours and set(table["phase"]) == {"P"}

    files = [tmp_path / "picker.json", tmp_path / "picker.pt"]
    record = _export_tag(run_id, "seisbench")
    assert record["out"] == [str(f) for f in files]
    assert record["sha256"] == {f.name: _sha256(f) for f in files}
    uploaded = client.list_artifacts(run_id, record["artifact_dir"])
    assert sorted(Path(a.path).name for a in uploaded) == ["picker.json", "picker.pt"]
    version = client.get_model_version("export-picker", "1")
    assert json.loads(version.tags["seismic_ml.export.seisbench"]) == record


@pytest.mark.parametrize("model_type", sorted(LSTM_VARIANTS))
def test_lstm_variants_export_as_seisbench_subclasses_of_this_package(runs, model_type, tmp_path):
    base = tmp_path / model_type
    result = _export("--model-uri", runs[model_type], "--format", "seisbench", "--out", base,
                     "--no-record")  # fmt: skip
    assert result.exit_code == 0, result.output
    name = LSTM_VARIANTS[model_type]
    assert f"load: {name}.load('{base}').eval() (seisbench has no such class" in result.stderr
    module, cls = name.rsplit(".", 1)
    loaded = getattr(__import__(module, fromlist=[cls]), cls).load(str(base)).eval()
    assert isinstance(loaded, sbm.WaveformModel)
    _same_outputs(loaded, load_model(runs[model_type]).module, 3001)
    with pytest.raises(TypeError, match="unexpected keyword"):
        sbm.PhaseNet.load(str(base))  # seisbench's PhaseNet has no bottleneck module
    assert "seismic_ml.export.seisbench" not in MlflowClient().get_run(runs[model_type]).data.tags


@pytest.mark.parametrize("model_type", sorted(MAGNITUDE_CLASSES))
def test_magnitude_models_are_refused_for_seisbench_in_one_line(runs, model_type, tmp_path):
    result = _export("--model-uri", runs[model_type], "--format", "seisbench",
                     "--out", tmp_path / "m")  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert f"{model_type} cannot be exported in seisbench's format" in lines[0]
    assert f"its class {MAGNITUDE_CLASSES[model_type]} (from seismic-ml)" in lines[0]
    assert "--format onnx" in lines[0] and not list(tmp_path.iterdir())


@pytest.mark.parametrize("model_type", model_types())
def test_every_model_type_exports_to_onnx_with_a_dynamic_batch(runs, model_type, tmp_path):
    out = tmp_path / f"{model_type}.onnx"
    result = _export("--model-uri", runs[model_type], "--format", "onnx", "--out", out)
    assert result.exit_code == 0, result.output
    assert "onnxruntime matches torch within" in result.stderr
    trained = load_model(runs[model_type])
    n = int(trained.module.in_samples)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, n]
    for batch in (1, 3):
        counts = np.random.default_rng(batch).normal(0, 2e3, (batch, 3, n)).astype(np.float32)
        x = torch.from_numpy(counts)
        with torch.no_grad():
            pre = trained.module.annotate_batch_pre(x, {}) if trained.task == "phase" else x
            expected = trained.module(pre).numpy()
        got = session.run(None, {"waveforms": counts})[0]
        assert got.shape == expected.shape and got.shape[0] == batch
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    labels = ["N", "P", "S"] if trained.task == "phase" else ["magnitude"]
    assert meta["task"] == trained.task and meta["model_type"] == model_type
    assert (meta["sampling_rate"], meta["component_order"]) == ("100.0", "ZNE")
    assert meta["in_samples"] == str(n) and json.loads(meta["labels"]) == labels
    assert meta["source_run_id"] == runs[model_type]
    assert _export_tag(runs[model_type], "onnx")["sha256"] == {out.name: _sha256(out)}


def test_an_onnx_export_that_differs_from_torch_is_refused_in_one_line(runs, tmp_path, monkeypatch):
    from seismic_ml import export as exporter

    traced = exporter.trace_onnx

    def drifting(trained, graph, x):  # the graph changes after tracing: ONNX != torch
        proto = traced(trained, graph, x)
        with torch.no_grad():
            next(graph.parameters()).add_(0.5)
        return proto

    monkeypatch.setattr(exporter, "trace_onnx", drifting)
    out = tmp_path / "drift.onnx"
    result = _export("--model-uri", runs["phasenet_mag"], "--format", "onnx", "--out", out,
                     "--no-record")  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "ONNX export of phasenet_mag differs from torch by" in lines[0]
    assert "(more than 0.0001) in onnxruntime: not written" in lines[0]
    assert not out.exists()
