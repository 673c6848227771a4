"""Log and register models in MLflow; find a run's model files; read its params and artifacts.

A training run keeps its model once: `model_args.json` and `model.safetensors` as the artifacts
of the pyfunc model it logs (MLflow 3 logged model), which also carries the package's code
(`code_paths`), a pinned requirement list and MLmodel `metadata` saying what it expects. A run
that logs no model (tuning trials, benchmarks: `log_model=False`) keeps the two files in its
`weights/` folder instead, where runs of the previous format kept them too.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn

from seismic_ml import model_files
from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError
from seismic_ml.serving.signature import model_signature
from seismic_ml.serving.windows import frame_from_windows
from seismic_ml.tracking.store import CHOOSE_STORE

MODEL_NAME = "model"
MODEL_URI_TAG = "seismic_ml.model_uri"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # logged as the model's code (code_paths)
MODEL_CODE = PACKAGE_DIR / "serving" / "model_code.py"
MODEL_ARTIFACTS = "artifacts"  # where a pyfunc's artifacts lie inside the logged model
# Every distribution that loading and predicting with the logged model imports, MLflow's own
# pyfunc loading included (measured in a clean interpreter: the direct ones first, then what
# they import), pinned to this environment's versions when the model is logged.
# tests/integration/test_portable_models.py records the imports of such an interpreter and
# fails on any distribution missing here. seismic-ml itself travels as code (code_paths).
REQUIREMENTS = (
    "mlflow", "torch", "numpy", "pandas", "seisbench", "safetensors", "psutil",
    "obspy", "scipy", "matplotlib", "lxml", "nest-asyncio", "tqdm", "bottleneck", "pyarrow",
    "annotated-doc", "annotated-types", "anyio", "cachetools", "certifi", "charset-normalizer",
    "click", "cloudpickle", "cycler", "databricks-sdk", "decorator", "fastapi", "fonttools",
    "idna", "importlib-metadata", "kiwisolver", "opentelemetry-api", "opentelemetry-proto",
    "opentelemetry-sdk", "opentelemetry-semantic-conventions", "packaging", "pillow",
    "protobuf", "pydantic", "pydantic-core", "pyparsing", "python-dateutil", "pyyaml",
    "requests", "six", "sqlparse", "starlette", "typing-extensions", "typing-inspection",
    "urllib3", "zipp",
)  # fmt: skip


def pip_requirements() -> list[str]:
    """REQUIREMENTS pinned to the installed versions (+cpu dropped; absent ones left out)."""
    pinned = []
    for package in REQUIREMENTS:
        try:
            pinned.append(f"{package}=={version(package).split('+')[0]}")
        except PackageNotFoundError:
            continue
    return pinned


def log_model(
    model: nn.Module,
    cfg: RunConfig,
    thresholds: Mapping[str, float] | None = None,
    run_id: str = "",
) -> str:
    """Log a self-contained pyfunc from code (package code, model files, metadata); its URI."""
    with tempfile.TemporaryDirectory() as tmp:
        files = model_files.write_model_files(model, cfg, Path(tmp), thresholds)
        args = json.loads(files["model_args"].read_text())
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(MODEL_CODE),
            artifacts={k: str(v) for k, v in files.items()},
            code_paths=[str(PACKAGE_DIR)],
            signature=model_signature(cfg.task, "log_sigma" in args["labels"]),
            input_example=frame_from_windows(example_input(model)),
            pip_requirements=pip_requirements(),
            metadata=model_metadata(args, run_id, cfg.data.dataset),
        )
    return info.model_uri


def model_metadata(args: Mapping[str, Any], run_id: str, dataset: str) -> dict[str, Any]:
    """MLmodel metadata: what the model expects and returns, and what trained it on which data."""
    keys = ("task", "model_type", "sampling_rate", "component_order", "in_samples", "labels")
    metadata = {key: args[key] for key in keys}
    if args["task"] == "phase":
        metadata["thresholds"] = args.get("thresholds", {})
    metadata.update({"training_run_id": run_id, "dataset": dataset})
    metadata["dataset_digest"] = training_digest(run_id) if run_id else ""
    metadata["format"] = f"{model_files.ARGS_FILE} + {model_files.WEIGHTS_FILE}"
    metadata["seismic_ml_version"] = args.get("seismic_ml_version", "")
    return metadata


def training_digest(run_id: str) -> str:
    """The digest of the run's training dataset input ("" when it logged none)."""
    for item in get_run(run_id).inputs.dataset_inputs:
        contexts = {t.value for t in item.tags if t.key == "mlflow.data.context"}
        if "training" in contexts:
            return item.dataset.digest
    return ""


def metadata_tags(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Model metadata as registry version tags: strings as they are, the rest as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def register(
    model_uri: str, name: str, alias: str = "", description: str = "", tags: dict | None = None
) -> int:
    """Register a version tagged with the model's metadata (and tags), alias it; the version."""
    tags = {**metadata_tags(mlflow.models.get_model_info(model_uri).metadata or {}), **(tags or {})}
    result = mlflow.register_model(model_uri, name, tags=tags)
    client = MlflowClient()
    if description:
        client.update_model_version(name, result.version, description=description)
    if alias:
        client.set_registered_model_alias(name, alias, result.version)
    return int(result.version)


def registered_version(name: str, run_id: str, alias: str = "") -> int:
    """The version of name that run_id registered (the alias's, when one was set)."""
    client = MlflowClient()
    if alias:
        return int(client.get_model_version_by_alias(name, alias).version)
    quoted = name.replace("'", "\\'")
    found = client.search_model_versions(f"name = '{quoted}' and run_id = '{run_id}'")
    if not found:
        raise SeismicMLError(f"run {run_id} has no version registered as {name!r}")
    return max(int(v.version) for v in found)


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


def get_run(run_id: str) -> mlflow.entities.Run:
    """A run by id; an unknown id is a clear error."""
    try:
        return MlflowClient().get_run(run_id)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":  # the store failed: say why, not "no run"
            raise
        raise SeismicMLError(
            f"no MLflow run {run_id!r} in {mlflow.get_tracking_uri()} ({CHOOSE_STORE})"
        ) from exc


@dataclass(frozen=True)
class ModelFiles:
    """Where a run's model files were found, and the two files downloaded from there."""

    where: str
    model_args: Path | None  # None: a run of the oldest safe format (weights + params)
    weights: Path


@dataclass(frozen=True)
class ModelPlace:
    """Where a run keeps its model files: a logged model's artifacts, or the run's weights/."""

    where: str  # "model m-...", or "weights/"
    run: mlflow.entities.Run = field(compare=False)
    names: frozenset[str]  # the files there
    base_uri: str = ""  # the logged model's artifact folder; "" for the run's weights/

    def fetch(self, name: str) -> Path:
        """One of the files, downloaded into a temporary folder (missing: SeismicMLError)."""
        if not self.base_uri:
            return download_artifact(self.run, f"{model_files.WEIGHTS_DIR}/{name}")
        target = tempfile.mkdtemp(prefix="seismic_ml_artifact_")
        uri = f"{self.base_uri}/{name}"
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=target))
        except (MlflowException, OSError) as exc:
            raise SeismicMLError(f"{self.where} has no {name}") from exc

    def fetch_if_there(self, name: str) -> Path | None:
        """One of the files, or None when it is not there."""
        return self.fetch(name) if name in self.names else None


def model_place(run: mlflow.entities.Run, model_id: str | None = None) -> ModelPlace:
    """The logged model model_id names, else the run's newest logged model, else weights/."""
    logged, client = logged_model(run, model_id), MlflowClient()
    if logged is None:
        listed = client.list_artifacts(run.info.run_id, model_files.WEIGHTS_DIR)
        names = frozenset(Path(f.path).name for f in listed)
        return ModelPlace(f"{model_files.WEIGHTS_DIR}/", run, names)
    listed = client.list_logged_model_artifacts(logged.model_id, MODEL_ARTIFACTS)
    names = frozenset(Path(f.path).name for f in listed)
    base = f"{logged.artifact_location.rstrip('/')}/{MODEL_ARTIFACTS}"
    return ModelPlace(f"model {logged.model_id}", run, names, base)


def find_model_files(run: mlflow.entities.Run, model_id: str | None = None) -> ModelFiles | None:
    """A run's model files (see model_place); None when it has no weights there."""
    place = model_place(run, model_id)
    if model_files.WEIGHTS_FILE not in place.names and not place.base_uri:
        return None
    weights = place.fetch(model_files.WEIGHTS_FILE)  # a logged model without them: one line
    return ModelFiles(place.where, place.fetch_if_there(model_files.ARGS_FILE), weights)


def logged_model(run: mlflow.entities.Run, model_id: str | None = None) -> Any:
    """The logged model model_id names, else the run's newest one named MODEL_NAME, or None."""
    client = MlflowClient()
    if model_id:
        return client.get_logged_model(model_id)
    found = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    return found[0] if found else None


def download_artifact(run: mlflow.entities.Run, path: str) -> Path:
    """Download one artifact of a run (as read: its artifact URI, not read again) into a
    temporary folder."""
    target = tempfile.mkdtemp(prefix="seismic_ml_artifact_")
    uri = f"{run.info.artifact_uri.rstrip('/')}/{path}"
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=target)
    except (MlflowException, OSError) as exc:
        raise SeismicMLError(f"run {run.info.run_id} has no artifact {path!r}") from exc
    return Path(local)


def example_input(model: nn.Module, batch: int = 1) -> np.ndarray:
    """A zero-free input example of the model's window shape."""
    generator = torch.Generator().manual_seed(0)
    shape = (batch, 3, int(model.in_samples))
    return torch.randn(shape, generator=generator).numpy().astype(np.float32)
