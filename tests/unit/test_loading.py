"""seismic_ml.load_model: every model type round-trips through safetensors; references resolve."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seismic_ml import model_files
from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import build_model, model_types
from seismic_ml.serving.windows import frame_from_windows, peak_samples, windows_from_frame
from tests.conftest import tiny_run_config
from tests.output import the_error


@pytest.mark.parametrize("model_type", model_types())
def test_every_model_type_rebuilds_from_its_files(model_type: str, tmp_path: Path) -> None:
    cfg = tiny_run_config(model_type)
    torch.manual_seed(0)
    model = build_model(model_type, cfg.model).eval()
    files = model_files.write_model_files(model, cfg, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "model_args.json"]
    saved = model_files.load_model_files(files["model_args"], files["weights"], cfg)
    rebuilt = saved.module
    assert (saved.task, saved.thresholds) == (cfg.task, {})
    assert type(rebuilt) is type(model)
    assert rebuilt.get_model_args() == model.get_model_args()
    x = torch.randn(2, 3, int(model.in_samples)) * 1e3
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert not rebuilt.training


@pytest.mark.parametrize("model_type", model_types())
def test_model_args_follow_seisbenchs_convention(model_type: str, tmp_path: Path) -> None:
    """Every constructor argument, then what a consumer must know; cls(**args) rebuilds it."""
    cfg = tiny_run_config(model_type)
    model = build_model(model_type, cfg.model)
    args = json.loads(model_files.write_model_files(model, cfg, tmp_path)["model_args"].read_text())
    assert args["format_version"] == 2
    assert (args["task"], args["model_type"]) == (cfg.task, model_type)
    assert args["sampling_rate"] == 100.0 and args["component_order"] == "ZNE"
    assert args["in_samples"] == model.in_samples
    assert args["labels"] == (["N", "P", "S"] if cfg.task == "phase" else ["magnitude"])
    constructor = inspect.signature(type(model).__init__).parameters
    assert set(dataclasses.asdict(cfg.model)) <= set(args["model_args"])  # the config's fields
    if cfg.task == "magnitude":  # seisbench WaveformModel's attributes, as arguments
        assert set(args["model_args"]) == set(constructor) - {"self"}
        for key in ("sampling_rate", "component_order", "in_samples"):
            assert args["model_args"][key] == getattr(model, key) == args[key]
    rebuilt = type(model)(**args["model_args"])
    rebuilt.load_state_dict(model_files.read_weights(tmp_path / "model.safetensors"))


def test_weights_of_another_config_are_a_clear_error(tmp_path: Path) -> None:
    cfg = tiny_run_config("amag_v2")
    files = model_files.write_model_files(build_model("amag_v2", cfg.model), cfg, tmp_path)
    other = tiny_run_config("phasenet_mag")
    with pytest.raises(SeismicMLError, match="do not fit a phasenet_mag"):
        model_files.load_model_files(None, files["weights"], other)  # params only (oldest)
    args = model_files.read_model_args(files["model_args"])
    args["model_args"]["lstm_hidden"] = 16
    files["model_args"].write_text(json.dumps(args))
    with pytest.raises(SeismicMLError, match="do not fit a amag_v2 built from its model_args"):
        model_files.load_model_files(files["model_args"], files["weights"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"lstm_hidden": 16},
            "params say model.lstm_hidden=8, model_args.json says lstm_hidden=16",
        ),
        ({"loss": "huber"}, 'params say model.loss="mse", model_args.json says loss="huber"'),
        ({"in_samples": 6001}, "params say a network with in_samples=3001, model_args.json says"),
    ],
)
def test_model_args_that_contradict_the_params_are_one_line(
    change: dict, message: str, tmp_path: Path
) -> None:
    cfg = tiny_run_config("amag_v2")
    files = model_files.write_model_files(build_model("amag_v2", cfg.model), cfg, tmp_path)
    args = model_files.read_model_args(files["model_args"])
    args["model_args"].update(change)
    files["model_args"].write_text(json.dumps(args))
    for check in (
        lambda: model_files.read_model_args(files["model_args"], cfg),  # a resume's check
        lambda: model_files.load_model_files(files["model_args"], files["weights"], cfg),
    ):
        with pytest.raises(SeismicMLError) as info:
            check()
        assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lstm_hidden": 2048, "lstm_layers": 8}, "808,439,074 parameters"),
        ({"lstm_hidden": -1}, "model_args.json is refused: model_args.lstm_hidden=-1 is outside"),
        ({"conv_kernel": 7}, "cannot build a amag_v2 from its model_args: "),
        ({"in_samples": "many"}, "cannot build a amag_v2 from its model_args: "),
        ({"norm": "rms"}, "model_args.json is refused: model_args.norm='rms' is not"),
    ],
)
def test_hostile_model_args_are_refused_before_building(
    change: dict, message: str, tmp_path: Path
) -> None:
    cfg = tiny_run_config("amag_v2")
    files = model_files.write_model_files(build_model("amag_v2", cfg.model), cfg, tmp_path)
    args = model_files.read_model_args(files["model_args"])
    args["model_args"].update(change)
    files["model_args"].write_text(json.dumps(args))
    with pytest.raises(SeismicMLError) as info:
        model_files.load_model_files(files["model_args"], files["weights"])
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"task": "phase", "model_type": "amag_v2"}, "a amag_v2 is a magnitude model, not phase"),
        ({"task": "phase", "model_type": "unet"}, "unknown model type 'unet'; known: "),
        ({"task": "phase"}, "model_args.json names no model_type"),
        ([1, 2], "model_args.json is not a JSON object of model args"),
    ],
)
def test_model_args_that_name_no_known_model_are_one_line(
    args: object, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "model_args.json"
    path.write_text(json.dumps(args))
    with pytest.raises(SeismicMLError, match=message):
        model_files.read_model_args(path)


def test_previous_format_model_args_still_load(tmp_path: Path) -> None:
    """Format 1 kept the config's fields under "model" (and a run_config.json beside)."""
    cfg = tiny_run_config("phasenet_lstm")
    model = build_model("phasenet_lstm", cfg.model).eval()
    files = model_files.write_model_files(model, cfg, tmp_path, {"P": 0.4})
    old = {"format_version": 1, "task": "phase", "model_type": "phasenet_lstm",
           "model": dataclasses.asdict(cfg.model), "in_samples": 3001, "sampling_rate": 100.0,
           "component_order": "ZNE", "labels": "NPS", "thresholds": {"P": 0.4}}  # fmt: skip
    files["model_args"].write_text(json.dumps(old))
    saved = model_files.load_model_files(files["model_args"], files["weights"], cfg)
    x = torch.randn(1, 3, 3001)
    with torch.no_grad():
        torch.testing.assert_close(saved.module(x), model(x))
    assert saved.thresholds == model_files.read_thresholds(files["model_args"]) == {"P": 0.4}


def _logged_run(params_cfg, model, files_cfg, folder: Path, old: dict | None = None) -> str:
    """A run whose params come from params_cfg, with model files (of files_cfg) in weights/;
    old, when given, replaces model_args.json and adds the previous format's run_config.json."""
    import mlflow

    files = model_files.write_model_files(model, files_cfg, folder)
    if old is not None:
        files["model_args"].write_text(json.dumps(old))
        (folder / "run_config.json").write_text(json.dumps(files_cfg.to_params()))
    mlflow.set_experiment("loading")
    with mlflow.start_run() as run:
        mlflow.log_params(params_cfg.to_params())
        mlflow.log_artifacts(str(folder), model_files.WEIGHTS_DIR)
    return run.info.run_id


def test_a_run_whose_params_contradict_its_model_args_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    from seismic_ml import load_model

    cfg = tiny_run_config("amag_v2")
    model = build_model("amag_v2", cfg.model)
    params = tiny_run_config("amag_v2")
    params.model.lstm_hidden = 16
    run_id = _logged_run(params, model, cfg, tmp_path)
    with pytest.raises(SeismicMLError) as info:
        load_model(run_id)
    message = str(info.value)
    assert message.startswith(f"run {run_id} (weights/): the run's params and its model_args")
    assert "params say model.lstm_hidden=16, model_args.json says lstm_hidden=8" in message
    assert "\n" not in message


def test_a_run_of_the_previous_format_loads_and_so_does_its_logged_model(tmp_path: Path) -> None:
    """Format 1: model_args.json held the config under "model", run_config.json beside it."""
    from types import SimpleNamespace

    from seismic_ml import load_model
    from seismic_ml.serving.pyfunc import SeismicModel

    cfg = tiny_run_config("phasenet_lstm")
    model = build_model("phasenet_lstm", cfg.model).eval()
    old = {"format_version": 1, "task": "phase", "model_type": "phasenet_lstm",
           "model": dataclasses.asdict(cfg.model), "in_samples": 3001, "sampling_rate": 100.0,
           "component_order": "ZNE", "labels": "NPS", "thresholds": {"S": 0.25}}  # fmt: skip
    run_id = _logged_run(cfg, model, cfg, tmp_path, old)
    loaded = load_model(run_id)
    x = np.random.default_rng(1).normal(size=(2, 3, 3001)).astype(np.float32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(torch.from_numpy(x)), model(torch.from_numpy(x)))
    assert loaded.thresholds == {"S": 0.25}
    served = SeismicModel()  # an old logged model's artifacts, read by today's pyfunc
    names = {"weights": "model.safetensors", "model_args": "model_args.json",
             "run_config": "run_config.json"}  # fmt: skip
    served.load_context(SimpleNamespace(artifacts={k: str(tmp_path / v) for k, v in names.items()}))
    answer = served.predict(None, frame_from_windows(x), {"threshold": 0.0})
    pd.testing.assert_frame_equal(answer, loaded.predict_windows(x, threshold=0.0))


def test_a_resume_refuses_a_run_whose_model_args_contradict_its_params(
    tiny_dataset: str, tmp_path: Path
) -> None:
    import mlflow
    from click.testing import CliRunner
    from mlflow.tracking import MlflowClient

    from seismic_ml.cli import cli
    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    result = train(tiny_run_config(epochs=1), MlflowRecorder("loading", log_model=False))
    args = json.loads(mlflow.artifacts.load_text(f"runs:/{result.run_id}/weights/model_args.json"))
    args["model_args"]["dropout"] = 0.5
    (tmp_path / "model_args.json").write_text(json.dumps(args))
    MlflowClient().log_artifact(result.run_id, str(tmp_path / "model_args.json"), "weights")
    resumed = CliRunner().invoke(cli, ["train-mag", "--resume", result.run_id, "--epochs", "2"])
    assert resumed.exit_code == 1, resumed.output
    message = "params say model.dropout=0.2, model_args.json says dropout=0.5"
    assert message in the_error(resumed.output)
    run = MlflowClient().get_run(result.run_id)
    assert run.info.status == "FINISHED" and "resumed_to_epochs" not in run.data.tags


def test_a_trained_run_loads_by_run_id_with_the_same_outputs(tiny_dataset: str) -> None:
    import seismic_ml
    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    result = train(tiny_run_config(epochs=1), MlflowRecorder("loading", log_model=False))
    loaded = seismic_ml.load_model(result.run_id)
    assert isinstance(loaded, seismic_ml.TrainedModel)
    assert loaded.run_id == result.run_id and loaded.name is None
    assert loaded.config.model.lstm_hidden == 8 and loaded.task == "magnitude"
    x = torch.randn(2, 3, 3001) * 1e4
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), result.model(x))
    assert seismic_ml.load_model(f"runs:/{result.run_id}/model").run_id == result.run_id


@pytest.mark.parametrize("ref", ["nonsense", "s3://bucket/model", "models:/"])
def test_an_unreadable_reference_lists_the_accepted_forms(ref: str) -> None:
    from seismic_ml import load_model

    with pytest.raises(SeismicMLError, match="models:/NAME@ALIAS"):
        load_model(ref)


def test_importing_the_package_does_not_import_torch_or_mlflow() -> None:
    code = "import sys, seismic_ml; print('torch' in sys.modules, 'mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_request_table_round_trips_and_names_what_was_expected() -> None:
    x = np.random.default_rng(0).normal(size=(3, 3, 50)).astype(np.float32)
    frame = frame_from_windows(x)
    frame["window"] = frame["window"].map({0: 7, 1: 3, 2: 5})  # ids kept in request order
    back, ids = windows_from_frame(frame, 50)
    np.testing.assert_array_equal(back, x)
    assert ids.tolist() == [7, 3, 5]
    with pytest.raises(SeismicMLError, match="window 7 has 49 rows; expected .* 50 rows"):
        windows_from_frame(frame.iloc[1:], 50)
    with pytest.raises(SeismicMLError, match="missing column"):
        windows_from_frame(frame.drop(columns="N"), 50)


def test_peak_samples_takes_the_maximum_of_each_run_above_threshold() -> None:
    curve = np.array([0.0, 0.5, 0.9, 0.4, 0.0, 0.0, 0.6, 0.7, 0.2])
    assert peak_samples(curve, 0.3) == [2, 7]
    assert peak_samples(curve, 0.95) == []
