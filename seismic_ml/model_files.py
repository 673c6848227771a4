"""A trained model as data, in seisbench's convention: model_args.json beside safetensors weights.

`model_args.json` holds every constructor argument of the network under `model_args` (what
`get_model_args()` returns, as in a seisbench saved model) and what a consumer must know: task,
model type, sampling rate, component order, input length, output labels and, for pickers, the
pick thresholds tuned in training. `model.safetensors` holds the tensors. Rebuilding is the
model type's class called with those arguments (`cls(**model_args)`) and `load_state_dict`,
in one checked call to the model registry: nothing is unpickled or executed. Writing and
reading need neither MLflow nor a tracking server, so the loader, the pyfunc model and the
tests share them.

Format 1 (before the network's own arguments were kept) held the model config's fields under
`model`; it is still read, building the network from that config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.models.registry import (
    ARGS_FILE,
    build_model,
    check_saved,
    constructor_args,
    rebuild_model,
)
from seismic_ml.version import __version__

if TYPE_CHECKING:
    from seismic_ml.config import RunConfig

WEIGHTS_DIR = "weights"  # a run's folder for the two files when it logs no model
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 2
PICK_PHASES = "PS"


def write_model_files(
    model: nn.Module, cfg: RunConfig, folder: Path, thresholds: Mapping[str, float] | None = None
) -> dict[str, Path]:
    """Weights (safetensors) and model args (with any tuned pick thresholds) in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"weights": folder / WEIGHTS_FILE, "model_args": folder / ARGS_FILE}
    tensors = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(paths["weights"]), metadata={"model_type": cfg.model_type})
    paths["model_args"].write_text(json.dumps(model_args(model, cfg, thresholds), indent=2))
    return paths


def model_args(
    model: nn.Module, cfg: RunConfig, thresholds: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Constructor arguments, input and output description, tuned thresholds ({"P": 0.41})."""
    cls = type(model)
    args = {
        "format_version": FORMAT_VERSION,
        "task": cfg.task,
        "model_type": cfg.model_type,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "model_args": constructor_args(model),
        "sampling_rate": float(model.sampling_rate),
        "component_order": str(model.component_order),
        "in_samples": int(model.in_samples),
        "labels": list(model.labels),
        "seismic_ml_version": __version__,
    }
    if thresholds:
        args["thresholds"] = check_thresholds(dict(thresholds), ARGS_FILE)
    return args


@dataclass
class SavedModel:
    """A network rebuilt from its files, and what its model_args.json says about it."""

    module: nn.Module
    task: str
    thresholds: dict[str, float]  # a picker's thresholds tuned in training ({} when none)


def load_model_files(
    args_path: Path | None, weights_path: Path, params: RunConfig | None = None
) -> SavedModel:
    """The network model_args.json describes, filled from the safetensors weights; params (the
    run's) must agree with it. No model_args.json: the network params describe (oldest format)."""
    weights = partial(read_weights, weights_path)  # read once the network passed its checks
    if args_path is not None:
        args = _read_object(args_path)
        thresholds = check_thresholds(args.get("thresholds"), ARGS_FILE)
        expected = None if params is None else (params.model_type, params.model)
        module = rebuild_model(args, weights, expected)
        return SavedModel(module, args["task"], thresholds if args["task"] == "phase" else {})
    if params is None:
        raise SeismicMLError(f"no {ARGS_FILE} and no run params say what network to build")
    return SavedModel(build_model(params.model_type, params.model, weights), params.task, {})


def read_model_args(path: Path, params: RunConfig | None = None) -> dict[str, Any]:
    """A model_args.json naming a task and a known model type (and agreeing with params, the
    run's, when given); anything else is one line."""
    args = _read_object(path)
    check_saved(args, None if params is None else (params.model_type, params.model))
    return args


def _read_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object; anything else is one line."""
    try:
        args = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SeismicMLError(f"cannot read {path.name}: {first_line(exc)}") from exc
    if not isinstance(args, dict):
        raise SeismicMLError(f"{path.name} is not a JSON object of model args")
    return args


def read_thresholds(path: Path) -> dict[str, float]:
    """The tuned pick thresholds a model_args.json holds ({} when none); refused if malformed."""
    return check_thresholds(_read_object(path).get("thresholds"), path.name)


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


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file; anything else (a pickle, say) is refused, never run."""
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise SeismicMLError(
            f"{path.name} is not a safetensors weights file: {first_line(exc)}"
        ) from exc
