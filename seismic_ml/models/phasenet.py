"""seisbench PhaseNet with its forward split into encode / bottleneck / decode.

The network is seisbench's own (same modules, same state-dict keys, same outputs); the split
lets the LSTM and ConvLSTM variants insert one module at the U-Net bottleneck and lets
phasenet_mag reuse the U-Net as a feature extractor.
"""

from __future__ import annotations

from typing import Any

import seisbench.models as sbm
import torch
import torch.nn.functional as F

IN_SAMPLES = 3001
# seisbench pads the input of down-sampling stages 1 to 3 by hand, to mirror TensorFlow.
_DOWN_PADDING = {1: (2, 3), 2: (1, 3), 3: (2, 3)}


class PhaseNet(sbm.PhaseNet):
    """seisbench PhaseNet (phases NPS, 3001 samples, 100 Hz) with a bottleneck hook."""

    def __init__(self, filter_factor: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("component_order", "ZNE")
        super().__init__(filter_factor=filter_factor, **kwargs)

    @property
    def bottleneck_channels(self) -> int:
        """Channel width of the deepest feature map, where the variants insert their module."""
        return self.filters_root * 2 ** (self.depth - 1) * self.filter_factor

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run the down branch; return the bottleneck feature map and the skip connections."""
        x = self.activation(self.in_bn(self.inc(x)))
        skips = []
        for i, (conv_same, bn1, conv_down, bn2) in enumerate(self.down_branch):
            x = self.activation(bn1(conv_same(x)))
            if conv_down is not None:
                skips.append(x)
                if i in _DOWN_PADDING:
                    x = F.pad(x, _DOWN_PADDING[i], "constant", 0)
                x = self.activation(bn2(conv_down(x)))
        return x, skips

    def bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        """Identity in plain PhaseNet; the variants transform the (B, C, T) bottleneck here."""
        return x

    def decode(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Run the up branch with skip connections; return the full-length feature map."""
        for (conv_up, bn1, conv_same, bn2), skip in zip(self.up_branch, skips[::-1]):
            x = self.activation(bn1(conv_up(x)))
            x = x[:, :, 1:-2]
            x = self._merge_skip(skip, x)
            x = self.activation(bn2(conv_same(x)))
        return x

    def forward(self, x: torch.Tensor, logits: bool = False) -> torch.Tensor:
        """(B, 3, 3001) normalised waveforms -> (B, classes, 3001) probabilities (or logits)."""
        features, skips = self.encode(x)
        x = self.out(self.decode(self.bottleneck(features), skips))
        return x if logits else self.softmax(x)

    def get_model_args(self) -> dict[str, Any]:
        """seisbench's model args plus filter_factor, so save/load rebuilds the same network."""
        args = super().get_model_args()
        args["filter_factor"] = self.filter_factor
        return args
