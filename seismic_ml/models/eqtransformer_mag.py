"""EQTransformer-style magnitude regressor: one magnitude per 30 s trace.

The encoder reuses seisbench's EQTransformer building blocks (Mousavi et al. 2020, Nat.
Commun. 11, 3952; seisbench.models.eqtransformer): `Encoder` (7 conv + max-pool stages,
3000 -> 24 samples), `ResCNNStack` (residual CNN blocks) and `BiLSTMStack` (BiLSTM blocks,
16 channels out); `filter_factor` multiplies the widths of the convolutions. In place of
EQTransformer's small additive-attention blocks, the BiLSTM sequence is projected to
`transformer_d_model` and passed through a torch TransformerEncoder (the BiLSTM already
encodes position, so no positional encoding is added); attention and max pooling over time
then feed MagnitudeHead with log10 of the removed amplitude scale.
"""

from __future__ import annotations

import torch
from seisbench.models.eqtransformer import BiLSTMStack, Encoder, ResCNNStack
from torch import nn

from seismic_ml.models.configs import EQTransformerMagConfig
from seismic_ml.models.magnitude import (
    COMPONENT_ORDER,
    SAMPLING_RATE,
    AmplitudeNormalizer,
    MagnitudeHead,
    TimePooling,
)

IN_SAMPLES = 3000
# From seisbench's EQTransformer (after the original repository).
FILTERS = [8, 16, 16, 32, 32, 64, 64]
KERNEL_SIZES = [11, 9, 7, 7, 5, 5, 3]
RES_CNN_KERNELS = [3, 3, 3, 3, 2, 3, 2]
LSTM_CHANNELS = 16


class EQTransformerMag(nn.Module):
    """Raw counts (B, 3, 3000) -> magnitude (B,), or (B, 2) with log sigma."""

    in_samples = IN_SAMPLES
    sampling_rate = SAMPLING_RATE
    component_order = COMPONENT_ORDER
    phases = "PS"
    n_class = 1

    def __init__(self, config: EQTransformerMagConfig) -> None:
        super().__init__()
        self.predicts_uncertainty = config.predicts_uncertainty
        self.normalizer = AmplitudeNormalizer(config.norm)
        filters = [f * config.filter_factor for f in FILTERS]
        self.encoder = Encoder(3, filters, KERNEL_SIZES, IN_SAMPLES)
        kernels = [RES_CNN_KERNELS[i % len(RES_CNN_KERNELS)] for i in range(config.cnn_blocks)]
        self.res_cnn_stack = ResCNNStack(kernels, filters[-1], config.dropout)
        self.bi_lstm_stack = BiLSTMStack(
            config.lstm_blocks, filters[-1], config.dropout, hidden_size=LSTM_CHANNELS
        )
        d_model = config.transformer_d_model
        self.to_d_model = nn.Linear(LSTM_CHANNELS, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            config.transformer_nhead,
            config.transformer_dim_feedforward,
            config.dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, config.transformer_num_encoder_layers, enable_nested_tensor=False
        )
        self.pool = TimePooling(d_model)
        self.head = MagnitudeHead(self.pool.out_features, config.dropout, self.predicts_uncertainty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One magnitude (and optionally log sigma) per trace."""
        x, log_scale = self.normalizer(x)
        x = self.bi_lstm_stack(self.res_cnn_stack(self.encoder(x)))
        x = self.transformer(self.to_d_model(x.transpose(1, 2)))
        return self.head(self.pool(x.transpose(1, 2)), log_scale)


def build(config: EQTransformerMagConfig) -> nn.Module:
    """The EQTransformer-style magnitude regressor."""
    return EQTransformerMag(config)
