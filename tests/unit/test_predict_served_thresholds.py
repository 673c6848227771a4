"""The pyfunc of a picker picks at the thresholds tuned in training unless the request gives one."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from seismic_ml.config import RunConfig
from seismic_ml.models.configs import PhaseNetConfig
from seismic_ml.models.registry import build_model
from seismic_ml.serving.windows import frame_from_windows, pick_windows
from seismic_ml.tracking import model_io

TUNED = {"P": 0.02, "S": 0.97}  # far from 0.3 on both sides: picks differ from the default's


@pytest.fixture(scope="module")
def picker() -> dict:
    """An untrained phasenet logged with tuned thresholds, and its module."""
    torch.manual_seed(0)
    cfg = RunConfig("phasenet", PhaseNetConfig())
    module = build_model(cfg.model_type, cfg.model).eval()
    mlflow.set_experiment("served-thresholds")
    with mlflow.start_run():
        mlflow.log_params(cfg.to_params())
        uri = model_io.log_model(module, cfg, TUNED)
    return {"uri": uri, "module": module}


def _windows() -> np.ndarray:
    """Two raw ZNE windows of noise at count level."""
    return np.random.default_rng(3).normal(scale=3e4, size=(2, 3, 3001)).astype(np.float32)


def test_a_loaded_picker_uses_its_tuned_thresholds_when_the_request_gives_none(picker):
    x = _windows()
    served = mlflow.pyfunc.load_model(picker["uri"])
    assert served.metadata.metadata["thresholds"] == TUNED
    ids = np.arange(len(x))
    tuned = pick_windows(picker["module"], x, ids, TUNED)
    fixed = pick_windows(picker["module"], x, ids, 0.3)
    assert not tuned.equals(fixed)  # else this test could not tell them apart
    for params in (None, {}):
        got = served.predict(frame_from_windows(x), params=params)
        pd.testing.assert_frame_equal(got, tuned)
    given = served.predict(frame_from_windows(x), params={"threshold": 0.3})
    pd.testing.assert_frame_equal(given, fixed)  # a given threshold applies to every phase


def test_the_threshold_parameter_declares_no_fixed_default(picker):
    (param,) = mlflow.models.get_model_info(picker["uri"]).signature.params.params
    assert (param.name, param.default) == ("threshold", None)


def test_load_model_predicts_as_served(picker):
    """seismic_ml.load_model(...).predict_windows picks as the served pyfunc does."""
    from seismic_ml import load_model

    x = _windows()
    trained = load_model(picker["uri"])
    assert trained.thresholds == TUNED
    served = mlflow.pyfunc.load_model(picker["uri"])
    pd.testing.assert_frame_equal(
        trained.predict_windows(x).reset_index(drop=True),
        served.predict(frame_from_windows(x)).reset_index(drop=True),
    )
    fixed = pick_windows(picker["module"], x, np.arange(len(x)), 0.3)
    pd.testing.assert_frame_equal(trained.predict_windows(x, threshold=0.3), fixed)
