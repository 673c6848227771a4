"""PhaseNet with a 1-D convolutional LSTM (Shi et al. 2015) at the U-Net bottleneck.

Formulation: the bottleneck feature map (B, C, T) (T = 12 samples for a 3001-sample window,
each sample covering about 2.6 s of input) is cut along time into consecutive chunks of
`convlstm_chunk` samples, zero-padded on the right to whole chunks. The chunks, oldest first,
are the sequence steps; each step is a 1-D feature map X_s of shape (B, C, chunk). At each
step the four gates come from one convolution along the chunk's time axis over the
concatenation [X_s, H_{s-1}]:

    i, f, o, g = split(conv([X_s, H_{s-1}]));  C_s = sigmoid(f) * C_{s-1} + sigmoid(i) * tanh(g)
    H_s = sigmoid(o) * tanh(C_s)

so the cell state C_s (B, hidden, chunk) carries over the steps while each gate keeps its
local time structure. The hidden maps H_s, concatenated back along time and cropped to T,
are projected by a 1x1 convolution to C channels and added to the bottleneck.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seismic_ml.models.phasenet import PhaseNet


class ConvLSTMCell1d(nn.Module):
    """One ConvLSTM step: gates by a 1-D convolution over [input, hidden]."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv1d(
            in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2
        )

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C_in, L) input and (h, c) state -> new (h, c), each (B, hidden, L)."""
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ChunkedConvLSTM(nn.Module):
    """ConvLSTM over time chunks of a (B, C, T) map, projected back to C, added residually."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, chunk: int) -> None:
        super().__init__()
        self.chunk = chunk
        self.cell = ConvLSTMCell1d(channels, hidden, kernel_size)
        self.proj = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T) -> (B, C, T)."""
        batch, _, length = x.shape
        steps = -(-length // self.chunk)
        padded = F.pad(x, (0, steps * self.chunk - length))
        h = x.new_zeros(batch, self.cell.hidden, self.chunk)
        state = (h, h)
        outputs = []
        for step in padded.split(self.chunk, dim=2):
            state = self.cell(step, state)
            outputs.append(state[0])
        hidden = torch.cat(outputs, dim=2)[:, :, :length]
        return x + self.proj(hidden)


class PhaseNetConvLSTM(PhaseNet):
    """PhaseNet whose bottleneck passes through a chunked 1-D ConvLSTM."""

    def __init__(
        self,
        filter_factor: int = 1,
        convlstm_hidden: int = 64,
        convlstm_kernel_size: int = 3,
        convlstm_chunk: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(filter_factor=filter_factor, **kwargs)
        self.convlstm_hidden = convlstm_hidden
        self.convlstm_kernel_size = convlstm_kernel_size
        self.convlstm_chunk = convlstm_chunk
        self.bottleneck_convlstm = ChunkedConvLSTM(
            self.bottleneck_channels, convlstm_hidden, convlstm_kernel_size, convlstm_chunk
        )

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Run the ConvLSTM over the bottleneck's time chunks."""
        return self.bottleneck_convlstm(x)

    def get_model_args(self) -> dict[str, Any]:
        """PhaseNet's model args plus the ConvLSTM options, for seisbench save/load."""
        args = super().get_model_args()
        args["convlstm_hidden"] = self.convlstm_hidden
        args["convlstm_kernel_size"] = self.convlstm_kernel_size
        args["convlstm_chunk"] = self.convlstm_chunk
        return args
