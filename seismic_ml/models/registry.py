"""The one map from a model type to its task, config dataclass, builder and training defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import nn

from seismic_ml.errors import SeismicMLError
from seismic_ml.models import (
    amag_v2,
    eqtransformer_mag,
    phasenet,
    phasenet_conv_lstm,
    phasenet_lstm,
    phasenet_mag,
)


@dataclass(frozen=True)
class ModelSpec:
    """What the rest of the code needs to know about one model type."""

    task: str
    config_cls: type
    build: Callable[[Any], nn.Module]
    train_defaults: Mapping[str, Any]
    search_space: Mapping[str, Mapping[str, Any]]
    summary: str


def _spec(task: str, module: ModuleType, lr: float, batch_size: int, summary: str) -> ModelSpec:
    """A spec from a model module's Config, build and SEARCH_SPACE, with its training defaults."""
    defaults = {"learning_rate": lr, "batch_size": batch_size, "warmup_epochs": 5.0}
    return ModelSpec(task, module.Config, module.build, defaults, module.SEARCH_SPACE, summary)


MODELS: dict[str, ModelSpec] = {
    "phasenet": _spec("phase", phasenet, 1e-3, 256, "seisbench PhaseNet"),
    "phasenet_lstm": _spec(
        "phase", phasenet_lstm, 1e-3, 256, "PhaseNet with a (Bi)LSTM bottleneck"
    ),
    "phasenet_conv_lstm": _spec(
        "phase", phasenet_conv_lstm, 1e-3, 256, "PhaseNet with a convolutional LSTM bottleneck"
    ),
    "phasenet_mag": _spec(
        "magnitude", phasenet_mag, 1e-3, 32, "PhaseNet-style U-Net magnitude regressor"
    ),
    "eqtransformer_mag": _spec(
        "magnitude", eqtransformer_mag, 1e-4, 16, "EQTransformer-style encoder + transformer"
    ),
    "amag_v2": _spec(
        "magnitude", amag_v2, 1e-3, 64, "MagnitudeNet: CNN, BiLSTM, attention, regression head"
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
