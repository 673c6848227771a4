"""MagnitudeNet (amag_v2): CNN encoder, BiLSTM, self-attention, attention pooling, regression.

Six stride-2 convolution stages shrink a 3001-sample trace to 47 steps of 128 channels
(times `filter_factor`, which multiplies every stage's width); a BiLSTM reads them in both
directions, multi-head self-attention (residual + LayerNorm) relates distant parts (P and S,
coda), and attention + max pooling over time feeds MagnitudeHead together with log10 of the
removed amplitude scale.
"""

from __future__ import annotations

import torch
from torch import nn

from seismic_ml.models.magnitude import (
    COMPONENT_ORDER,
    SAMPLING_RATE,
    MagnitudeHead,
    MagnitudeModel,
    TimePooling,
)

IN_SAMPLES = 3001
CNN_CHANNELS = (16, 32, 64, 64, 128, 128)
CNN_KERNEL = 7


def conv_encoder(dropout: float, filter_factor: int = 1) -> nn.Sequential:
    """Stride-2 conv + BatchNorm + GELU stages, each halving the time axis."""
    layers: list[nn.Module] = []
    in_channels = 3
    for channels in (c * filter_factor for c in CNN_CHANNELS):
        layers += [
            nn.Conv1d(in_channels, channels, CNN_KERNEL, stride=2, padding=CNN_KERNEL // 2),
            nn.BatchNorm1d(channels),
            nn.GELU(),
        ]
        in_channels = channels
    layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class MagnitudeNet(MagnitudeModel):
    """Raw counts (B, 3, in_samples) -> magnitude (B,), or (B, 2) with log sigma.

    The convolutions, BiLSTM and attention work on any input length; 3001 samples is what it
    is trained on.
    """

    def __init__(
        self,
        filter_factor: int = 1,
        lstm_hidden: int = 128,
        lstm_layers: int = 2,
        attention_heads: int = 4,
        dropout: float = 0.2,
        loss: str = "mse",
        norm: str = "std",
        in_samples: int = IN_SAMPLES,
        sampling_rate: float = SAMPLING_RATE,
        component_order: str = COMPONENT_ORDER,
    ) -> None:
        super().__init__(in_samples, sampling_rate, component_order, loss, norm)
        self.filter_factor, self.dropout = filter_factor, dropout
        self.lstm_hidden, self.lstm_layers = lstm_hidden, lstm_layers
        self.attention_heads = attention_heads
        self.encoder = conv_encoder(dropout, filter_factor)
        self.lstm = nn.LSTM(
            CNN_CHANNELS[-1] * filter_factor,
            lstm_hidden,
            num_layers=lstm_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if lstm_layers > 1 else 0.0,
        )
        width = 2 * lstm_hidden
        self.attention = nn.MultiheadAttention(
            width, attention_heads, dropout=dropout, batch_first=True
        )
        self.attention_norm = nn.LayerNorm(width)
        self.pool = TimePooling(width)
        self.head = MagnitudeHead(self.pool.out_features, dropout, self.predicts_uncertainty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One magnitude (and optionally log sigma) per trace."""
        x, log_scale = self.normalizer(x)
        seq, _ = self.lstm(self.encoder(x).transpose(1, 2))
        attended, _ = self.attention(seq, seq, seq, need_weights=False)
        seq = self.attention_norm(seq + attended)
        return self.head(self.pool(seq.transpose(1, 2)), log_scale)
