"""A trained model as data, in seisbench's convention: model_args.json beside safetensors weights.

`model_args.json` holds every constructor argument of the network under `model_args` (what
`get_model_args()` returns, as in a seisbench saved model) and what a consumer must know: task,
model type, sampling rate, component order, input length, output labels and, for pickers, the
pick thresholds tuned in training. `model.safetensors` holds the tensors. Rebuilding is the
model type's class called with those arguments (`cls(**model_args)`) and `load_state_dict`:
nothing is unpickled or executed. Writing and reading need neither MLflow nor a tracking
server, so the loader, the pyfunc model and the tests share them.

Format 1 (before the network's own arguments were kept) held the model config's fields under
`model`; it is still read, building the network from that config.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from seismic_ml.errors import BadOptionValue, SeismicMLError, first_line
from seismic_ml.models.registry import build_model, check_size, get_spec, non_defaults
from seismic_ml.version import __version__

if TYPE_CHECKING:
    from seismic_ml.config import RunConfig

WEIGHTS_DIR = "weights"  # a run's folder for the two files when it logs no model
WEIGHTS_FILE = "model.safetensors"
ARGS_FILE = "model_args.json"
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


def constructor_args(model: nn.Module) -> dict[str, Any]:
    """The network's get_model_args() as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(model.get_model_args()))


def read_model_args(path: Path) -> dict[str, Any]:
    """A model_args.json naming a task and a known model type; anything else is one line."""
    args = _read_object(path)
    for key in ("task", "model_type"):
        if not isinstance(args.get(key), str):
            raise SeismicMLError(f"{path.name} names no {key}")
    task = get_spec(args["model_type"]).task  # an unknown model type lists the known ones
    if args["task"] != task:
        said = f"{args['model_type']} is a {task} model, not {args['task']}"
        raise SeismicMLError(f"{path.name}: a {said}")
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


def rebuild(args: Mapping[str, Any], weights: Path) -> nn.Module:
    """The network model args describe, with the weights loaded, in eval mode."""
    if args.get("format_version") == 1:
        module = build_model(args["model_type"], config_of(args["model_type"], args.get("model")))
    else:
        module = construct(args["model_type"], args.get("model_args"))
    return load_weights(module, weights, f"a {args['model_type']} built from its {ARGS_FILE}")


def construct(model_type: str, kwargs: Any) -> nn.Module:
    """cls(**kwargs) for model_type, once its config fields and parameter count are checked."""
    config = config_of(model_type, kwargs)
    cls = get_spec(model_type).network_class()
    check_size(model_type, non_defaults(config), lambda: _call(cls, kwargs, model_type))
    return _call(cls, kwargs, model_type)


def _call(cls: type[nn.Module], kwargs: dict[str, Any], model_type: str) -> nn.Module:
    """cls(**kwargs); arguments it does not take (or takes badly) are one line."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, SeismicMLError) as exc:
        raise SeismicMLError(
            f"{ARGS_FILE}: cannot build a {model_type} from its model_args: {first_line(exc)}"
        ) from None


def config_of(model_type: str, values: Any) -> Any:
    """model_type's config from the fields values holds (others default), range-checked."""
    if not isinstance(values, dict):
        raise SeismicMLError(f"{ARGS_FILE} holds no model_args object for its {model_type}")
    config_cls = get_spec(model_type).config_cls
    names = {f.name for f in dataclasses.fields(config_cls)}
    try:
        config = config_cls(**{k: v for k, v in values.items() if k in names})
        config.validate(lambda name: f"model_args.{name}")
    except BadOptionValue as exc:
        raise SeismicMLError(f"{ARGS_FILE} is refused: {exc}") from None
    return config


def load_weights(module: nn.Module, weights: Path, what: str) -> nn.Module:
    """module with the safetensors weights loaded (strict), in eval mode."""
    try:
        module.load_state_dict(read_weights(weights), strict=True)
    except RuntimeError as exc:
        raise SeismicMLError(f"the weights do not fit {what}: {first_line(exc)}") from exc
    return module.eval()


def build_module(cfg: RunConfig, weights: Path) -> nn.Module:
    """cfg's network (from a run's params) with the weights loaded: runs that kept no args."""
    module = build_model(cfg.model_type, cfg.model)
    return load_weights(module, weights, f"a {cfg.model_type} built from the run's params")


def check_against_params(args: Mapping[str, Any], cfg: RunConfig) -> None:
    """Refuse model args that contradict the run's params, naming the first difference."""
    said = _said_by_params(args, cfg)
    if said is not None:
        raise SeismicMLError(
            f"the run's params and its {ARGS_FILE} disagree: params say {said[0]}, "
            f"{ARGS_FILE} says {said[1]}; one was changed after training, so neither is used"
        )


def _said_by_params(args: Mapping[str, Any], cfg: RunConfig) -> tuple[str, str] | None:
    """(what the params say, what the args say) of the first disagreement, or None."""
    if args.get("model_type") != cfg.model_type:
        return f"model.type={cfg.model_type}", f"model_type={args.get('model_type')}"
    section = "model" if args.get("format_version") == 1 else "model_args"
    stored = args.get(section) if isinstance(args.get(section), dict) else {}
    key = _first_difference(dataclasses.asdict(cfg.model), stored)
    if key is not None:
        return f"model.{key}={_shown(getattr(cfg.model, key))}", f"{key}={_shown(stored, key)}"
    if section == "model":
        return None
    built = constructor_args(_meta_network(cfg))
    key = _first_difference(built, stored)
    if key is not None:
        return f"a network with {key}={_shown(built[key])}", f"{key}={_shown(stored, key)}"
    return None


def _first_difference(expected: Mapping[str, Any], stored: Mapping[str, Any]) -> str | None:
    """The first key of expected whose stored value is missing or differs (a bool is no int)."""
    for key, value in expected.items():
        if key not in stored or not _same(stored[key], value):
            return key
    return None


def _same(a: Any, b: Any) -> bool:
    """Equal JSON values of the same kind (True is not 1 here)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _shown(value: Any, key: str | None = None) -> str:
    """A value as JSON; with key, value[key], or `nothing` when it has no such key."""
    if key is not None:
        return _shown(value[key]) if key in value else "nothing"
    return json.dumps(value)


def _meta_network(cfg: RunConfig) -> nn.Module:
    """cfg's network on PyTorch's meta device: its constructor arguments, no storage."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return get_spec(cfg.model_type).build(cfg.model)
