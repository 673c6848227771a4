"""Parts shared by the magnitude networks: amplitude normaliser, pooling, head, loss.

Magnitude models take raw counts. Normalising a trace erases the amplitude that magnitude
depends on, so each model normalises with AmplitudeNormalizer and feeds the removed scale,
log10(scale), into MagnitudeHead next to the pooled waveform features.

Every magnitude network is a MagnitudeModel: like seisbench's WaveformModel it declares what it
takes (`in_samples`, `sampling_rate`, `component_order`) and what it returns (`labels`) as
constructor arguments, and `get_model_args()` returns every constructor argument, so that
`cls(**model_args)` plus the state dict rebuilds it (seisbench's save/load convention).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seismic_ml.errors import SeismicMLError
from seismic_ml.models.configs import LOSSES, NORMS

SAMPLING_RATE = 100.0
COMPONENT_ORDER = "ZNE"
# Residuals beyond half a magnitude unit count linearly in the Huber loss.
HUBER_DELTA = 0.5
_EPS = 1e-10


class MagnitudeModel(nn.Module):
    """Base of the magnitude networks: raw counts (B, 3, in_samples) -> magnitude per trace.

    Each constructor argument is kept as an attribute of the same name, which is how
    `get_model_args` finds them all.
    """

    def __init__(
        self,
        in_samples: int,
        sampling_rate: float = SAMPLING_RATE,
        component_order: str = COMPONENT_ORDER,
        loss: str = "mse",
        norm: str = "std",
    ) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise SeismicMLError(f"loss={loss!r} is not one of: {', '.join(LOSSES)}")
        self.in_samples = int(in_samples)
        self.sampling_rate = float(sampling_rate)
        self.component_order = component_order
        self.loss = loss
        self.norm = norm
        self.normalizer = AmplitudeNormalizer(norm)

    @property
    def predicts_uncertainty(self) -> bool:
        """True when the model outputs (magnitude, log sigma) per trace (gaussian_nll)."""
        return self.loss == "gaussian_nll"

    @property
    def labels(self) -> list[str]:
        """Names of the output columns: magnitude, and log_sigma for gaussian_nll models."""
        return ["magnitude", "log_sigma"] if self.predicts_uncertainty else ["magnitude"]

    def get_model_args(self) -> dict[str, Any]:
        """Every constructor argument by name, so that cls(**args) rebuilds this network."""
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self"]
        return {name: getattr(self, name) for name in names}


class AmplitudeNormalizer(nn.Module):
    """Demean per channel, divide by the per-trace std or peak; also return log10 of that scale."""

    def __init__(self, norm: str = "std") -> None:
        super().__init__()
        if norm not in NORMS:
            raise SeismicMLError(f"norm={norm!r} is not one of: {', '.join(NORMS)}")
        self.norm = norm

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, N) counts -> ((B, C, N) normalised, (B, 1) log10 scale)."""
        x = x - x.mean(dim=-1, keepdim=True)
        if self.norm == "std":
            scale = x.std(dim=(1, 2), keepdim=True)
        else:
            scale = x.abs().amax(dim=(1, 2), keepdim=True)
        scale = scale + _EPS
        return x / scale, torch.log10(scale).flatten(1)


class TimePooling(nn.Module):
    """Attention-weighted mean and max over time: (B, C, T) -> (B, 2C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.score = nn.Conv1d(channels, 1, 1)

    @property
    def out_features(self) -> int:
        """Width of the pooled vector."""
        return 2 * self.score.in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool a feature map over its time axis."""
        weights = torch.softmax(self.score(x), dim=-1)
        return torch.cat([(weights * x).sum(dim=-1), x.amax(dim=-1)], dim=1)


class MagnitudeHead(nn.Module):
    """MLP on [pooled features, log10 scale] -> magnitude (B,) or (magnitude, log sigma) (B, 2)."""

    def __init__(
        self, in_features: int, dropout: float, predicts_uncertainty: bool, hidden: int = 64
    ) -> None:
        super().__init__()
        self.predicts_uncertainty = predicts_uncertainty
        self.net = nn.Sequential(
            nn.Linear(in_features + 1, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2 if predicts_uncertainty else 1),
        )

    def forward(self, features: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        """(B, F) features and (B, 1) log10 scale -> (B,) or (B, 2)."""
        out = self.net(torch.cat([features, log_scale], dim=1))
        return out if self.predicts_uncertainty else out.squeeze(-1)


def split_output(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A model's output as (magnitude (B,), sigma (B,) or None), for evaluation and prediction."""
    if output.ndim == 2:
        return output[:, 0], torch.exp(output[:, 1])
    return output, None


def magnitude_loss(name: str, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean training loss of a batch: mse, huber (delta 0.5) or Gaussian NLL on (mag, log sigma)."""
    target = target.reshape(-1).to(output.dtype)
    if name == "gaussian_nll":
        if output.ndim != 2 or output.shape[1] != 2:
            raise SeismicMLError(f"gaussian_nll needs (B, 2) outputs, got {tuple(output.shape)}")
        variance = torch.exp(2 * output[:, 1])
        return F.gaussian_nll_loss(output[:, 0], target, variance)
    if output.ndim != 1:
        raise SeismicMLError(f"{name} needs (B,) outputs, got {tuple(output.shape)}")
    if name == "mse":
        return F.mse_loss(output, target)
    if name == "huber":
        return F.huber_loss(output, target, delta=HUBER_DELTA)
    raise SeismicMLError(f"unknown magnitude loss {name!r}; known: {', '.join(LOSSES)}")
