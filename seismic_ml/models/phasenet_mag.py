"""PhaseNet-style U-Net magnitude regressor: one magnitude per trace.

The seisbench PhaseNet U-Net (encoder, decoder, skips) maps the normalised trace to a
per-sample feature map; attention and max pooling over time reduce it to one vector, which
MagnitudeHead turns into the magnitude together with log10 of the removed amplitude scale.
"""

from __future__ import annotations

import torch

from seismic_ml.errors import SeismicMLError
from seismic_ml.models.magnitude import (
    COMPONENT_ORDER,
    SAMPLING_RATE,
    MagnitudeHead,
    MagnitudeModel,
    TimePooling,
)
from seismic_ml.models.phasenet import IN_SAMPLES, PhaseNet

# Channels of the U-Net's per-sample output, the features pooled over time.
FEATURE_CHANNELS = 32


class PhaseNetMag(MagnitudeModel):
    """Raw counts (B, 3, 3001) -> magnitude (B,), or (B, 2) with log sigma.

    The U-Net's crops fit 3001 samples only (as seisbench's PhaseNet), so in_samples is 3001.
    """

    def __init__(
        self,
        filter_factor: int = 1,
        dropout: float = 0.1,
        loss: str = "mse",
        norm: str = "std",
        in_samples: int = IN_SAMPLES,
        sampling_rate: float = SAMPLING_RATE,
        component_order: str = COMPONENT_ORDER,
    ) -> None:
        if in_samples != IN_SAMPLES:
            raise SeismicMLError(f"phasenet_mag takes {IN_SAMPLES} samples, not {in_samples}")
        super().__init__(in_samples, sampling_rate, component_order, loss, norm)
        self.filter_factor, self.dropout = filter_factor, dropout
        self.unet = PhaseNet(filter_factor=filter_factor, classes=FEATURE_CHANNELS, phases=None)
        self.pool = TimePooling(FEATURE_CHANNELS)
        self.head = MagnitudeHead(self.pool.out_features, dropout, self.predicts_uncertainty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One magnitude (and optionally log sigma) per trace."""
        x, log_scale = self.normalizer(x)
        features = torch.relu(self.unet(x, logits=True))
        return self.head(self.pool(features), log_scale)
