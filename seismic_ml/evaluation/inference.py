"""What both scorers share: fixed-order batches, the forward pass, per-trace identity columns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from seismic_ml.training.loop import resolve_device

# Every model is scored on the same windows, whatever seed it was trained with.
WINDOW_SEED = 0


@dataclass
class Scored:
    """A task's scores before logging: prefixed metrics, tables to save, figures written."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


def batches(dataset: Dataset, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """The windows in their fixed order, batched."""
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output for a batch, on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    return model(x.to(device)).cpu()


def ready(model: nn.Module) -> nn.Module:
    """The model on the best device, in eval mode."""
    return model.to(resolve_device("auto")).eval()


def identity_columns(metadata: pd.DataFrame) -> pd.DataFrame:
    """Trace name (as the dataset's writer named it), station and SNR of each trace, in order."""
    name = "trace_name_original" if "trace_name_original" in metadata else "trace_name"
    table = pd.DataFrame({"trace_name": metadata[name].to_numpy()})
    for column in ("station_code", "trace_snr_db"):
        if column in metadata.columns:
            table[column] = metadata[column].to_numpy()
    return table
