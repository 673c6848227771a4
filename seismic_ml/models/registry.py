"""The one map from a model type to its task, config dataclass, builder and training defaults.

Importing it costs no torch: the configs live in models/configs.py, and each builder is named
"module:function" and imported the first time a model of that type is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
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
    builder: str  # "module:function" taking the config and returning the network
    train_defaults: Mapping[str, Any]
    search_space: Mapping[str, Mapping[str, Any]]
    summary: str

    def build(self, config: Any) -> nn.Module:
        """The network for config; the builder's module (and torch) is imported on first use."""
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(config)


def _defaults(lr: float, batch_size: int) -> dict[str, Any]:
    """A model's training defaults: its learning rate and batch size, 5 warmup epochs."""
    return {"learning_rate": lr, "batch_size": batch_size, "warmup_epochs": 5.0}


MODELS: dict[str, ModelSpec] = {
    "phasenet": ModelSpec(
        task="phase",
        config_cls=configs.PhaseNetConfig,
        builder="seismic_ml.models.phasenet:build",
        train_defaults=_defaults(lr=1e-3, batch_size=256),
        search_space=configs.PHASENET_SEARCH_SPACE,
        summary="seisbench PhaseNet",
    ),
    "phasenet_lstm": ModelSpec(
        task="phase",
        config_cls=configs.PhaseNetLSTMConfig,
        builder="seismic_ml.models.phasenet_lstm:build",
        train_defaults=_defaults(lr=1e-3, batch_size=256),
        search_space=configs.PHASENET_LSTM_SEARCH_SPACE,
        summary="PhaseNet with a (Bi)LSTM bottleneck",
    ),
    "phasenet_conv_lstm": ModelSpec(
        task="phase",
        config_cls=configs.PhaseNetConvLSTMConfig,
        builder="seismic_ml.models.phasenet_conv_lstm:build",
        train_defaults=_defaults(lr=1e-3, batch_size=256),
        search_space=configs.PHASENET_CONV_LSTM_SEARCH_SPACE,
        summary="PhaseNet with a convolutional LSTM bottleneck",
    ),
    "phasenet_mag": ModelSpec(
        task="magnitude",
        config_cls=configs.PhaseNetMagConfig,
        builder="seismic_ml.models.phasenet_mag:build",
        train_defaults=_defaults(lr=1e-3, batch_size=32),
        search_space=configs.PHASENET_MAG_SEARCH_SPACE,
        summary="PhaseNet-style U-Net magnitude regressor",
    ),
    "eqtransformer_mag": ModelSpec(
        task="magnitude",
        config_cls=configs.EQTransformerMagConfig,
        builder="seismic_ml.models.eqtransformer_mag:build",
        train_defaults=_defaults(lr=1e-4, batch_size=16),
        search_space=configs.EQTRANSFORMER_MAG_SEARCH_SPACE,
        summary="EQTransformer-style encoder + transformer",
    ),
    "amag_v2": ModelSpec(
        task="magnitude",
        config_cls=configs.AmagV2Config,
        builder="seismic_ml.models.amag_v2:build",
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


def build_model(model_type: str, config: Any) -> nn.Module:
    """Validate the config and build the network."""
    spec = get_spec(model_type)
    if not isinstance(config, spec.config_cls):
        raise SeismicMLError(f"{model_type} needs a {spec.config_cls.__name__}")
    config.validate()
    return spec.build(config)
