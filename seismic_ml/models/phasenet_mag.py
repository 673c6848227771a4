"""PhaseNet-style U-Net magnitude regressor: one magnitude per trace.

The seisbench PhaseNet U-Net (encoder, decoder, skips) maps the normalised trace to a
per-sample feature map; attention and max pooling over time reduce it to one vector, which
MagnitudeHead turns into the magnitude together with log10 of the removed amplitude scale.
"""

from __future__ import annotations

import torch
from torch import nn

from seismic_ml.models.configs import PhaseNetMagConfig
from seismic_ml.models.magnitude import (
    COMPONENT_ORDER,
    SAMPLING_RATE,
    AmplitudeNormalizer,
    MagnitudeHead,
    TimePooling,
)
from seismic_ml.models.phasenet import IN_SAMPLES, PhaseNet

# Channels of the U-Net's per-sample output, the features pooled over time.
FEATURE_CHANNELS = 32


class PhaseNetMag(nn.Module):
    """Raw counts (B, 3, 3001) -> magnitude (B,), or (B, 2) with log sigma."""

    in_samples = IN_SAMPLES
    sampling_rate = SAMPLING_RATE
    component_order = COMPONENT_ORDER

    def __init__(
        self,
        filter_factor: int = 1,
        norm: str = "std",
        dropout: float = 0.1,
        uncertainty: bool = False,
    ) -> None:
        super().__init__()
        self.predicts_uncertainty = uncertainty
        self.normalizer = AmplitudeNormalizer(norm)
        self.unet = PhaseNet(filter_factor=filter_factor, classes=FEATURE_CHANNELS, phases=None)
        self.pool = TimePooling(FEATURE_CHANNELS)
        self.head = MagnitudeHead(self.pool.out_features, dropout, uncertainty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One magnitude (and optionally log sigma) per trace."""
        x, log_scale = self.normalizer(x)
        features = torch.relu(self.unet(x, logits=True))
        return self.head(self.pool(features), log_scale)


def build(config: PhaseNetMagConfig) -> nn.Module:
    """The U-Net magnitude regressor for the configured width, norm and loss."""
    return PhaseNetMag(
        filter_factor=config.filter_factor,
        norm=config.norm,
        dropout=config.dropout,
        uncertainty=config.predicts_uncertainty,
    )
