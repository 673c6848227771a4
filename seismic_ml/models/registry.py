"""The one map from a model type to its task, config dataclass, network class and defaults.

Importing it costs no torch: the configs live in models/configs.py, and each network class is
named "module:Class" and imported the first time a model of that type is built. A config's
fields are constructor arguments of its class of the same names, so `cls(**asdict(config))`
builds the network, and `cls(**network.get_model_args())` rebuilds it (seisbench's convention).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from seismic_ml.errors import SeismicMLError
from seismic_ml.models import configs

if TYPE_CHECKING:
    from torch import nn


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


def build_model(model_type: str, config: Any) -> nn.Module:
    """Validate the config, refuse a network too large to build here, then build it."""
    spec = get_spec(model_type)
    if not isinstance(config, spec.config_cls):
        raise SeismicMLError(f"{model_type} needs a {spec.config_cls.__name__}")
    check_model_size(model_type, config)
    return spec.build(config)


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
