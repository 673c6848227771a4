"""seismic_ml.load_model: every model type round-trips through safetensors; references resolve."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import build_model, model_types
from seismic_ml.serving.windows import frame_from_windows, peak_samples, windows_from_frame
from seismic_ml.tracking import artifacts
from tests.conftest import tiny_run_config


@pytest.mark.parametrize("model_type", model_types())
def test_every_model_type_rebuilds_from_its_files(model_type: str, tmp_path: Path) -> None:
    cfg = tiny_run_config(model_type)
    torch.manual_seed(0)
    model = build_model(model_type, cfg.model).eval()
    files = artifacts.write_model_files(model, cfg, tmp_path)
    rebuilt = artifacts.build_module(artifacts.read_config(files["run_config"]), files["weights"])
    x = torch.randn(2, 3, int(model.in_samples)) * 1e3
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    assert not rebuilt.training


def test_weights_of_another_config_are_a_clear_error(tmp_path: Path) -> None:
    cfg = tiny_run_config("amag_v2")
    files = artifacts.write_model_files(build_model("amag_v2", cfg.model), cfg, tmp_path)
    other = tiny_run_config("phasenet_mag")
    with pytest.raises(SeismicMLError, match="do not fit a phasenet_mag"):
        artifacts.build_module(other, files["weights"])


def test_a_trained_run_loads_by_run_id_with_the_same_outputs(tiny_dataset: str) -> None:
    import seismic_ml
    from seismic_ml.training.train import TrackingOptions, train

    result = train(tiny_run_config(epochs=1), TrackingOptions("loading", log_model=False))
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
