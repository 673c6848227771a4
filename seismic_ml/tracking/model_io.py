"""Log, register and load models and run artifacts in MLflow."""

from __future__ import annotations

import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import mlflow.pytorch
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn

import seismic_ml
from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError, first_line

MODEL_NAME = "model"
MODEL_URI_TAG = "seismic_ml.model_uri"
REQUIREMENTS = ("torch", "seisbench", "mlflow", "numpy", "pandas", "obspy")


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model, read from this environment (no inference)."""
    pinned = []
    for package in REQUIREMENTS:
        try:
            pinned.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            pinned.append(package)
    return pinned


def log_model(
    model: nn.Module, input_example: np.ndarray, register_as: str = "", alias: str = ""
) -> str:
    """Log the model (pickle format with this package's code, so `annotate` survives); its URI."""
    model = model.cpu().eval()
    info = mlflow.pytorch.log_model(
        model,
        name=MODEL_NAME,
        input_example=input_example,
        serialization_format="pickle",
        code_paths=[str(Path(seismic_ml.__file__).parent)],
        pip_requirements=pip_requirements(),
    )
    if register_as:
        register(info.model_uri, register_as, alias)
    return info.model_uri


def register(model_uri: str, name: str, alias: str = "") -> int:
    """Register a model version under name and point alias at it; returns the version."""
    result = mlflow.register_model(model_uri, name)
    if alias:
        MlflowClient().set_registered_model_alias(name, alias, result.version)
    return int(result.version)


def load_model(model_uri: str) -> nn.Module:
    """Load a logged model (runs:/, models:/NAME/VERSION, models:/NAME@ALIAS) in eval mode."""
    try:
        model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except (MlflowException, OSError) as exc:
        raise SeismicMLError(f"cannot load model {model_uri!r}: {first_line(exc)}") from exc
    return model.eval()


def run_model_uri(run_id: str) -> str:
    """The URI of the model a training run logged (kept in a tag of the run)."""
    uri = get_run(run_id).data.tags.get(MODEL_URI_TAG)
    if not uri:
        raise SeismicMLError(f"run {run_id} logged no model (no {MODEL_URI_TAG} tag)")
    return uri


def run_config(run_id: str) -> RunConfig:
    """The RunConfig a training run logged as params."""
    return RunConfig.from_params(get_run(run_id).data.params)


def get_run(run_id: str) -> mlflow.entities.Run:
    """A run by id; an unknown id is a clear error."""
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException as exc:
        raise SeismicMLError(f"no MLflow run {run_id!r} in {mlflow.get_tracking_uri()}") from exc


def download_artifact(run_id: str, path: str) -> Path:
    """Download one artifact of a run into a temporary folder."""
    target = tempfile.mkdtemp(prefix="seismic_ml_artifact_")
    try:
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=path, dst_path=target
        )
    except (MlflowException, OSError) as exc:
        raise SeismicMLError(f"run {run_id} has no artifact {path!r}") from exc
    return Path(local)


def example_input(model: nn.Module, batch: int = 1) -> np.ndarray:
    """A zero-free input example of the model's window shape."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, 3, int(model.in_samples))
    return torch.randn(shape, generator=generator).numpy().astype(np.float32)
