"""The one map from a model type to its task, config dataclass, network class and defaults,
and the one place a network is built: from a config, or rebuilt from saved model args.

Importing it costs no torch: the configs live in models/configs.py, and each network class is
named "module:Class" and imported the first time a model of that type is built. A config's
fields are constructor arguments of its class of the same names, so `cls(**asdict(config))`
builds the network, and `cls(**network.get_model_args())` rebuilds it (seisbench's convention).
Every build is checked first: the config's ranges, and the parameter count on the meta device.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from seismic_ml.errors import BadOptionValue, SeismicMLError, first_line
from seismic_ml.models import configs

if TYPE_CHECKING:
    from torch import Tensor, nn

# The file a saved network's constructor arguments live in (seisbench's name for it).
ARGS_FILE = "model_args.json"
# Weights, read only once the network they fill has passed its checks.
Weights = Callable[[], Mapping[str, "Tensor"]]


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the code needs to know about one model type."""

    task: str
    config_cls: type
    network: str  # "module:Class", whose constructor takes the config's fields by name
    train_defaults: Mapping[str, Any]
    search_space: Mapping[str, Mapping[str, Any]]
    summary: str

    def network_class(self) -> type[nn.Module]:
        """The network's class; its module (and torch) is imported on first use."""
        module, _, name = self.network.partition(":")
        return getattr(importlib.import_module(module), name)

    def build(self, config: Any) -> nn.Module:
        """The network for config: its class called with the config's fields."""
        return self.network_class()(**dataclasses.asdict(config))


# 64, not seisbench's 256: on a training split of a few thousand traces 256 leaves about 100
# optimizer steps in 20 epochs, too few for S (on synthetic-mixed:2000 the S peaks stayed below
# 0.3, S F1 0); 64 gives four times the steps for the same windows per epoch (#16)
PHASE_BATCH = 64


def _defaults(lr: float, batch_size: int) -> dict[str, Any]:
    """A model's training defaults: its learning rate and batch size, 5 warmup epochs."""
    return {"learning_rate": lr, "batch_size": batch_size, "warmup_epochs": 5.0}


# The model a command trains or tunes when --model-type is not given, per task.
DEFAULT_MODEL = {"phase": "phasenet", "magnitude": "amag_v2"}

MODELS: dict[str, ModelSpec] = {
    "phasenet": ModelSpec(
        task="phase",
        config_cls=configs.PhaseNetConfig,
        network="seismic_ml.models.phasenet:PhaseNet",
        train_defaults=_defaults(lr=1e-3, batch_size=PHASE_BATCH),
        search_space=configs.PHASENET_SEARCH_SPACE,
        summary="seisbench PhaseNet",
    ),
    "phasenet_lstm": ModelSpec(
        task="phase",
        config_cls=configs.PhaseNetLSTMConfig,
        network="seismic_ml.models.phasenet_lstm:PhaseNetLSTM",
        train_defaults=_defaults(lr=1e-3, batch_size=PHASE_BATCH),
        search_space=configs.PHASENET_LSTM_SEARCH_SPACE,
        summary="PhaseNet with a (Bi)LSTM bottleneck",
    ),
    "phasenet_conv_lstm": ModelSpec(
        task="phase",
        config_cls=configs.PhaseNetConvLSTMConfig,
        network="seismic_ml.models.phasenet_conv_lstm:PhaseNetConvLSTM",
        train_defaults=_defaults(lr=1e-3, batch_size=PHASE_BATCH),
        search_space=configs.PHASENET_CONV_LSTM_SEARCH_SPACE,
        summary="PhaseNet with a convolutional LSTM bottleneck",
    ),
    "phasenet_mag": ModelSpec(
        task="magnitude",
        config_cls=configs.PhaseNetMagConfig,
        network="seismic_ml.models.phasenet_mag:PhaseNetMag",
        train_defaults=_defaults(lr=1e-3, batch_size=32),
        search_space=configs.PHASENET_MAG_SEARCH_SPACE,
        summary="PhaseNet-style U-Net magnitude regressor",
    ),
    "eqtransformer_mag": ModelSpec(
        task="magnitude",
        config_cls=configs.EQTransformerMagConfig,
        network="seismic_ml.models.eqtransformer_mag:EQTransformerMag",
        train_defaults=_defaults(lr=1e-4, batch_size=16),
        search_space=configs.EQTRANSFORMER_MAG_SEARCH_SPACE,
        summary="EQTransformer-style encoder + transformer",
    ),
    "amag_v2": ModelSpec(
        task="magnitude",
        config_cls=configs.AmagV2Config,
        network="seismic_ml.models.amag_v2:MagnitudeNet",
        train_defaults=_defaults(lr=1e-3, batch_size=64),
        search_space=configs.AMAG_V2_SEARCH_SPACE,
        summary="MagnitudeNet: CNN, BiLSTM, attention, regression head",
    ),
}


def get_spec(model_type: str) -> ModelSpec:
    """The spec of a model type; an unknown name lists every known one."""
    try:
        return MODELS[model_type]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise SeismicMLError(f"unknown model type {model_type!r}; known: {known}") from None


def model_types(task: str | None = None) -> list[str]:
    """Model type names, optionally only those of one task."""
    return [name for name, spec in MODELS.items() if task is None or spec.task == task]


# A network is refused above this many parameters, wherever its config came from (options, a
# run's params, a registry version): 200 million float32 weights are 0.8 GB, 3.2 GB once training
# adds gradients and Adam's two moments; the models table's largest default has 1.2 million
# and published pickers a few million, so the limit is far beyond any sensible choice yet
# still fits a laptop. On a machine with little memory free the limit is lower (see below).
MAX_PARAMETERS = 200_000_000
# ... and the float32 weights may take at most this share of the memory available now:
# training keeps four copies of them (weights, gradients, two Adam moments).
MEMORY_SHARE = 0.25
BYTES_PER_PARAMETER = 4  # float32


def build_model(model_type: str, config: Any, weights: Weights | None = None) -> nn.Module:
    """Validate the config, refuse a network too large to build here, then build it; with
    weights, filled from them (strict) and in eval mode."""
    spec = get_spec(model_type)
    if not isinstance(config, spec.config_cls):
        raise SeismicMLError(f"{model_type} needs a {spec.config_cls.__name__}")
    check_model_size(model_type, config)
    module = spec.build(config)
    if weights is None:
        return module
    return _filled(module, weights, f"a {model_type} built from the run's params")


def check_model_size(model_type: str, config: Any) -> int:
    """The network's parameter count, counted without allocating; over the limit raises."""
    spec = get_spec(model_type)
    config.validate()
    return check_size(model_type, non_defaults(config), lambda: spec.build(config))


def check_size(model_type: str, described: str, build: Callable[[], nn.Module]) -> int:
    """The parameter count of build()'s network (meta device); over the limit is one line."""
    count = count_built_parameters(build)
    limit, why = parameter_limit()
    if count > limit:
        raise SeismicMLError(
            f"model {model_type} with {described} would have {count:,} parameters "
            f"({_gigabytes(count)} of float32 weights), over the limit of {limit:,} parameters "
            f"({_gigabytes(limit)}, {why}): refusing to build it"
        )
    return count


def count_parameters(spec: ModelSpec, config: Any) -> int:
    """Parameters of config's network, built on PyTorch's meta device: shapes, no storage."""
    return count_built_parameters(lambda: spec.build(config))


def count_built_parameters(build: Callable[[], nn.Module]) -> int:
    """Parameters of the network build() makes on PyTorch's meta device: shapes, no storage."""
    import torch

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def parameter_limit() -> tuple[int, str]:
    """The largest network allowed here and why: MAX_PARAMETERS, or less when memory is short."""
    import psutil

    by_memory = int(psutil.virtual_memory().available * MEMORY_SHARE / BYTES_PER_PARAMETER)
    if by_memory < MAX_PARAMETERS:
        return by_memory, f"{MEMORY_SHARE:.0%} of the memory available"
    return MAX_PARAMETERS, "the project's limit"


def non_defaults(config: Any) -> str:
    """The hyperparameters that differ from their defaults, as name=value."""
    changed = [
        f"{f.name}={getattr(config, f.name)}"
        for f in fields(config)
        if getattr(config, f.name) != f.default
    ]
    return ", ".join(changed) or "its defaults"


def _gigabytes(count: int) -> str:
    """A parameter count as float32 gigabytes."""
    return f"{count * BYTES_PER_PARAMETER / 1e9:.1f} GB"


# --- rebuilding a saved network: model_args.json (as a dict) and its weights ------------------


def rebuild_model(
    saved: Mapping[str, Any], weights: Weights, expected: tuple[str, Any] | None = None
) -> nn.Module:
    """The network saved model args describe, checked, built and filled (strict), in eval
    mode; expected: the (model type, config) the run's params say, which the args must match."""
    spec = check_saved(saved, expected)
    model_type = saved["model_type"]
    if saved.get("format_version") == 1:  # the config's fields under "model"
        module = build_model(model_type, _saved_config(spec, model_type, saved.get("model")))
    else:
        kwargs = saved.get("model_args")
        config = _saved_config(spec, model_type, kwargs)
        cls = spec.network_class()
        check_size(model_type, non_defaults(config), lambda: _construct(cls, kwargs, model_type))
        module = _construct(cls, kwargs, model_type)
    return _filled(module, weights, f"a {model_type} built from its {ARGS_FILE}")


def check_saved(saved: Mapping[str, Any], expected: tuple[str, Any] | None = None) -> ModelSpec:
    """The spec of the known model type and task saved args name, which agree with expected
    (the run's params) when given; anything else is one line."""
    for key in ("task", "model_type"):
        if not isinstance(saved.get(key), str):
            raise SeismicMLError(f"{ARGS_FILE} names no {key}")
    spec = get_spec(saved["model_type"])  # an unknown model type lists the known ones
    if saved["task"] != spec.task:
        said = f"{saved['model_type']} is a {spec.task} model, not {saved['task']}"
        raise SeismicMLError(f"{ARGS_FILE}: a {said}")
    said = None if expected is None else _contradiction(saved, *expected)
    if said is not None:
        raise SeismicMLError(
            f"the run's params and its {ARGS_FILE} disagree: params say {said[0]}, "
            f"{ARGS_FILE} says {said[1]}; one was changed after training, so neither is used"
        )
    return spec


def _saved_config(spec: ModelSpec, model_type: str, values: Any) -> Any:
    """model_type's config from the fields values holds (others default), range-checked."""
    if not isinstance(values, dict):
        raise SeismicMLError(f"{ARGS_FILE} holds no model_args object for its {model_type}")
    names = {f.name for f in fields(spec.config_cls)}
    try:
        config = spec.config_cls(**{k: v for k, v in values.items() if k in names})
        config.validate(lambda name: f"model_args.{name}")
    except BadOptionValue as exc:
        raise SeismicMLError(f"{ARGS_FILE} is refused: {exc}") from None
    return config


def _construct(cls: type[nn.Module], kwargs: dict[str, Any], model_type: str) -> nn.Module:
    """cls(**kwargs); arguments it does not take (or takes badly) are one line."""
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, RuntimeError, SeismicMLError) as exc:
        raise SeismicMLError(
            f"{ARGS_FILE}: cannot build a {model_type} from its model_args: {first_line(exc)}"
        ) from None


def _filled(module: nn.Module, weights: Weights, what: str) -> nn.Module:
    """module with the weights loaded (strict), in eval mode; a misfit is one line."""
    try:
        module.load_state_dict(weights(), strict=True)
    except RuntimeError as exc:
        raise SeismicMLError(f"the weights do not fit {what}: {first_line(exc)}") from exc
    return module.eval()


def _contradiction(
    saved: Mapping[str, Any], model_type: str, config: Any
) -> tuple[str, str] | None:
    """(what the params say, what the args say) of their first disagreement, or None."""
    if saved.get("model_type") != model_type:
        return f"model.type={model_type}", f"model_type={saved.get('model_type')}"
    section = "model" if saved.get("format_version") == 1 else "model_args"
    stored = saved.get(section) if isinstance(saved.get(section), dict) else {}
    key = _first_difference(dataclasses.asdict(config), stored)
    if key is not None:
        return f"model.{key}={_shown(getattr(config, key))}", f"{key}={_shown(stored, key)}"
    if section == "model":
        return None
    built = constructor_args(_meta_network(get_spec(model_type), config))
    key = _first_difference(built, stored)
    if key is not None:
        return f"a network with {key}={_shown(built[key])}", f"{key}={_shown(stored, key)}"
    return None


def constructor_args(model: nn.Module) -> dict[str, Any]:
    """The network's get_model_args() as plain JSON values (tuples become lists)."""
    return json.loads(json.dumps(model.get_model_args()))


def _meta_network(spec: ModelSpec, config: Any) -> nn.Module:
    """config's network on PyTorch's meta device: its constructor arguments, no storage."""
    import torch

    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        return spec.build(config)


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
