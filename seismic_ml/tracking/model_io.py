"""Log and register models in MLflow; read a run's params, tags and artifacts."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import mlflow
import mlflow.pyfunc
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn

from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError
from seismic_ml.serving.signature import model_signature
from seismic_ml.serving.windows import frame_from_windows
from seismic_ml.tracking import artifacts
from seismic_ml.tracking.store import CHOOSE_STORE

MODEL_NAME = "model"
MODEL_URI_TAG = "seismic_ml.model_uri"
MODEL_CODE = Path(__file__).resolve().parents[1] / "serving" / "model_code.py"
# seismic-ml itself is not on PyPI: the serving environment must have it installed.
REQUIREMENTS = ("torch", "seisbench", "mlflow", "numpy", "pandas", "obspy", "safetensors")


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
    model: nn.Module, cfg: RunConfig, thresholds: Mapping[str, float] | None = None
) -> str:
    """Log a pyfunc model from code with its weights and args as artifacts (no pickle); its URI."""
    with tempfile.TemporaryDirectory() as tmp:
        files = artifacts.write_model_files(model, cfg, Path(tmp), thresholds)
        has_sigma = getattr(cfg.model, "loss", "") == "gaussian_nll"
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(MODEL_CODE),
            artifacts={k: str(v) for k, v in files.items()},
            signature=model_signature(cfg.task, has_sigma),
            input_example=frame_from_windows(example_input(model)),
            pip_requirements=pip_requirements(),
        )
    return info.model_uri


def register(
    model_uri: str, name: str, alias: str = "", description: str = "", tags: dict | None = None
) -> int:
    """Register a model version with a description and tags, point alias at it; the version."""
    result = mlflow.register_model(model_uri, name, tags=tags)
    client = MlflowClient()
    if description:
        client.update_model_version(name, result.version, description=description)
    if alias:
        client.set_registered_model_alias(name, alias, result.version)
    return int(result.version)


def version_metadata(cfg: RunConfig, best_val_loss: float) -> tuple[str, dict[str, str]]:
    """The description and tags a registered version carries, so versions compare at a glance."""
    tags = {"task": cfg.task, "model_type": cfg.model_type, "dataset": cfg.data.dataset}
    description = (
        f"{cfg.task} model {cfg.model_type} trained on {cfg.data.dataset}; "
        f"best validation loss {best_val_loss:.4g}"
    )
    return description, tags


def tag_version(name: str, version: int, tags: dict[str, str]) -> None:
    """Set tags on a registered model version (evaluation results, say)."""
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)


def run_config(run_id: str) -> RunConfig:
    """The RunConfig a training run logged as params."""
    return RunConfig.from_params(get_run(run_id).data.params)


def get_run(run_id: str) -> mlflow.entities.Run:
    """A run by id; an unknown id is a clear error."""
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException as exc:
        raise SeismicMLError(
            f"no MLflow run {run_id!r} in {mlflow.get_tracking_uri()} ({CHOOSE_STORE})"
        ) from exc


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
