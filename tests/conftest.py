"""Redirect every cache and store to a temporary folder before anything imports seisbench."""

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="seismic_ml_tests_"))
os.environ["SEISBENCH_CACHE_ROOT"] = str(_ROOT / "seisbench")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_ROOT / 'mlflow.db'}"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["SEISMIC_ML_HOME"] = str(_ROOT / "seismic_ml_home")
os.environ["GIT_PYTHON_REFRESH"] = "quiet"


@pytest.fixture(scope="session", autouse=True)
def _work_in_scratch_folder():
    """Run every test from the scratch folder: MLflow's SQLite store puts artifacts in ./mlruns."""
    work = _ROOT / "cwd"
    work.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        yield


@pytest.fixture(scope="session")
def test_root() -> Path:
    """The session's scratch folder holding the seisbench cache and the default MLflow store."""
    return _ROOT


TINY_DATASET = "synthetic:200"


@pytest.fixture(scope="session")
def tiny_dataset() -> str:
    """The --dataset value of a 200-trace synthetic set, built once into the session cache."""
    from seismic_ml.data.registry import load_dataset

    load_dataset(TINY_DATASET)
    return TINY_DATASET


def tiny_run_config(model_type: str = "amag_v2", dataset: str = TINY_DATASET, **train: object):
    """A RunConfig small enough to train in a second or two on 2 cores."""
    from seismic_ml.config import DataConfig, RunConfig, TrainConfig
    from seismic_ml.models.registry import get_spec

    small = {
        "amag_v2": {"lstm_hidden": 8, "lstm_layers": 1, "attention_heads": 2},
        "phasenet_lstm": {"lstm_hidden_size": 8},
        "phasenet_conv_lstm": {"convlstm_hidden": 4},
        "eqtransformer_mag": {
            "transformer_d_model": 16,
            "transformer_nhead": 2,
            "transformer_num_encoder_layers": 1,
            "transformer_dim_feedforward": 32,
        },
    }
    model = get_spec(model_type).config_cls(**small.get(model_type, {}))
    settings = {"epochs": 1, "batch_size": 8, "max_steps_per_epoch": 3, "warmup_epochs": 1.0}
    settings.update(train)
    return RunConfig(model_type, model, DataConfig(dataset=dataset), TrainConfig(**settings))


_SESSION_EXPERIMENT_ID = os.environ.get("MLFLOW_EXPERIMENT_ID")


@pytest.fixture(autouse=True)
def _no_leaked_experiment_id() -> Iterator[None]:
    """mlflow.set_experiment exports MLFLOW_EXPERIMENT_ID; a test (or a module fixture) calling
    it must not send later tests' subprocesses to that experiment (of maybe another store)."""
    yield
    if _SESSION_EXPERIMENT_ID is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = _SESSION_EXPERIMENT_ID
