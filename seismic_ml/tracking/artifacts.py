"""A trained model as data: run config JSON, model args JSON, safetensors weights. No pickle.

Writing and reading these files needs neither MLflow nor a tracking server, so the loader,
the pyfunc model and the tests share them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.models.registry import build_model

WEIGHTS_DIR = "weights"
WEIGHTS_FILE = "model.safetensors"
ARGS_FILE = "model_args.json"
CONFIG_FILE = "run_config.json"
FORMAT_VERSION = 1
PICK_PHASES = "PS"


def write_model_files(
    model: nn.Module, cfg: RunConfig, folder: Path, thresholds: Mapping[str, float] | None = None
) -> dict[str, Path]:
    """Weights (safetensors), model args (with any tuned pick thresholds) and run config."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "weights": folder / WEIGHTS_FILE,
        "model_args": folder / ARGS_FILE,
        "run_config": folder / CONFIG_FILE,
    }
    tensors = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(paths["weights"]), metadata={"model_type": cfg.model_type})
    paths["model_args"].write_text(json.dumps(model_args(model, cfg, thresholds), indent=2))
    paths["run_config"].write_text(json.dumps(cfg.to_params(), indent=2))
    return paths


def model_args(
    model: nn.Module, cfg: RunConfig, thresholds: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """What rebuilds the network, what its input is (seisbench keeps model args as JSON) and,
    when tuned, the per-phase pick thresholds ({"P": 0.41, "S": 0.27})."""
    args = {
        "format_version": FORMAT_VERSION,
        "task": cfg.task,
        "model_type": cfg.model_type,
        "model": dataclasses.asdict(cfg.model),
        "in_samples": int(model.in_samples),
        "sampling_rate": 100.0,
        "component_order": "ZNE",
        "labels": getattr(model, "labels", None),
    }
    if thresholds:
        args["thresholds"] = check_thresholds(dict(thresholds), ARGS_FILE)
    return args


def read_thresholds(path: Path) -> dict[str, float]:
    """The tuned pick thresholds a model_args.json holds ({} when none); refused if malformed."""
    try:
        args = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SeismicMLError(f"cannot read {path.name}: {first_line(exc)}") from exc
    if not isinstance(args, dict):
        raise SeismicMLError(f"{path.name} is not a JSON object of model args")
    return check_thresholds(args.get("thresholds"), path.name)


def check_thresholds(value: Any, where: str) -> dict[str, float]:
    """Thresholds as {phase: float in (0, 1)} for P and S; anything else is one clear error."""
    if value is None:
        return {}
    if isinstance(value, dict) and all(_is_threshold(k, v) for k, v in value.items()):
        return {k: float(v) for k, v in value.items()}
    shown = json.dumps(value, default=str)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise SeismicMLError(
        f"{where}: thresholds must map P and/or S to a number between 0 and 1 "
        f"(exclusive), not {shown}"
    )


def _is_threshold(phase: Any, value: Any) -> bool:
    """A known phase and a real number strictly between 0 and 1."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return phase in tuple(PICK_PHASES) and number and math.isfinite(value) and 0 < value < 1


def read_config(path: Path) -> RunConfig:
    """The RunConfig kept as flat params in a JSON file."""
    try:
        params = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SeismicMLError(f"cannot read the run config {path.name}: {first_line(exc)}") from exc
    if not isinstance(params, dict):
        raise SeismicMLError(f"{path.name} is not a JSON object of params")
    return RunConfig.from_params({str(k): str(v) for k, v in params.items()})


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; anything else (a pickle, say) is refused, never run."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise SeismicMLError(
            f"{path.name} is not a safetensors weights file: {first_line(exc)}"
        ) from exc


def build_module(cfg: RunConfig, weights: Path) -> nn.Module:
    """cfg's network built through the model registry, with the weights loaded, in eval mode."""
    module = build_model(cfg.model_type, cfg.model)
    try:
        module.load_state_dict(read_weights(weights), strict=True)
    except RuntimeError as exc:
        raise SeismicMLError(
            f"the weights do not fit a {cfg.model_type} built from the run's params: "
            f"{first_line(exc)}"
        ) from exc
    return module.eval()
