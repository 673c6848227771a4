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

from seismic_ml.models.magnitude import (
    COMPONENT_ORDER,
    SAMPLING_RATE,
    MagnitudeHead,
    MagnitudeModel,
    TimePooling,
)

IN_SAMPLES = 3000
# From seisbench's EQTransformer (after the original repository).
FILTERS = [8, 16, 16, 32, 32, 64, 64]
KERNEL_SIZES = [11, 9, 7, 7, 5, 5, 3]
RES_CNN_KERNELS = [3, 3, 3, 3, 2, 3, 2]
LSTM_CHANNELS = 16


class EQTransformerMag(MagnitudeModel):
    """Raw counts (B, 3, in_samples) -> magnitude (B,), or (B, 2) with log sigma."""

    phases = "PS"  # the picks EQTransformer's encoder was designed around (not outputs here)
    n_class = 1

    def __init__(
        self,
        filter_factor: int = 1,
        cnn_blocks: int = 5,
        lstm_blocks: int = 2,
        transformer_d_model: int = 128,
        transformer_nhead: int = 8,
        transformer_num_encoder_layers: int = 4,
        transformer_dim_feedforward: int = 512,
        dropout: float = 0.1,
        loss: str = "mse",
        norm: str = "std",
        in_samples: int = IN_SAMPLES,
        sampling_rate: float = SAMPLING_RATE,
        component_order: str = COMPONENT_ORDER,
    ) -> None:
        super().__init__(in_samples, sampling_rate, component_order, loss, norm)
        self.filter_factor, self.dropout = filter_factor, dropout
        self.cnn_blocks, self.lstm_blocks = cnn_blocks, lstm_blocks
        self.transformer_d_model, self.transformer_nhead = transformer_d_model, transformer_nhead
        self.transformer_num_encoder_layers = transformer_num_encoder_layers
        self.transformer_dim_feedforward = transformer_dim_feedforward
        filters = [f * filter_factor for f in FILTERS]
        self.encoder = Encoder(3, filters, KERNEL_SIZES, self.in_samples)
        kernels = [RES_CNN_KERNELS[i % len(RES_CNN_KERNELS)] for i in range(cnn_blocks)]
        self.res_cnn_stack = ResCNNStack(kernels, filters[-1], dropout)
        self.bi_lstm_stack = BiLSTMStack(
            lstm_blocks, filters[-1], dropout, hidden_size=LSTM_CHANNELS
        )
        self.to_d_model = nn.Linear(LSTM_CHANNELS, transformer_d_model)
        layer = nn.TransformerEncoderLayer(
            transformer_d_model,
            transformer_nhead,
            transformer_dim_feedforward,
            dropout,
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, transformer_num_encoder_layers, enable_nested_tensor=False
        )
        self.pool = TimePooling(transformer_d_model)
        self.head = MagnitudeHead(self.pool.out_features, dropout, self.predicts_uncertainty)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One magnitude (and optionally log sigma) per trace."""
        x, log_scale = self.normalizer(x)
        x = self.bi_lstm_stack(self.res_cnn_stack(self.encoder(x)))
        x = self.transformer(self.to_d_model(x.transpose(1, 2)))
        return self.head(self.pool(x.transpose(1, 2)), log_scale)
