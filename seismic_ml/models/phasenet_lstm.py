"""PhaseNet with a (Bi)LSTM over the time axis of the U-Net bottleneck.

The bottleneck feature map (B, C, T) is read as a sequence of T feature vectors; the LSTM's
output is projected back to C channels and added to the bottleneck (a residual), so the
decoder sees the same shapes as in plain PhaseNet.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seismic_ml.models.phasenet import PhaseNet


class SequenceLSTM(nn.Module):
    """LSTM over the time axis of a (B, C, T) map, projected back to C and added residually."""

    def __init__(self, channels: int, hidden: int, num_layers: int, bidirectional: bool) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            channels, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional
        )
        self.proj = nn.Linear(hidden * (2 if bidirectional else 1), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        seq, _ = self.lstm(x.transpose(1, 2))
        return x + self.proj(seq).transpose(1, 2)


class PhaseNetLSTM(PhaseNet):
    """PhaseNet whose bottleneck passes through a (Bi)LSTM."""

    def __init__(
        self,
        filter_factor: int = 1,
        lstm_hidden_size: int = 0,
        lstm_num_layers: int = 1,
        lstm_bidirectional: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(filter_factor=filter_factor, **kwargs)
        self.lstm_hidden_size = lstm_hidden_size
        self.lstm_num_layers = lstm_num_layers
        self.lstm_bidirectional = lstm_bidirectional
        channels = self.bottleneck_channels
        self.bottleneck_lstm = SequenceLSTM(
            channels, lstm_hidden_size or channels, lstm_num_layers, lstm_bidirectional
        )

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Run the LSTM over the bottleneck's time axis."""
        return self.bottleneck_lstm(x)

    def get_model_args(self) -> dict[str, Any]:
        """PhaseNet's model args plus the LSTM options, for seisbench save/load."""
        args = super().get_model_args()
        args["lstm_hidden_size"] = self.lstm_hidden_size
        args["lstm_num_layers"] = self.lstm_num_layers
        args["lstm_bidirectional"] = self.lstm_bidirectional
        return args
