"""Parts shared by the magnitude networks: amplitude normaliser, pooling, head, loss.

Magnitude models take raw counts. Normalising a trace erases the amplitude that magnitude
depends on, so each model normalises with AmplitudeNormalizer and feeds the removed scale,
log10(scale), into MagnitudeHead next to the pooled waveform features.
"""

from __future__ import annotations

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
