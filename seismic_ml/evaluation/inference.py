"""What both scorers share: fixed-order batches, the forward pass, per-trace identity columns."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import seisbench.data as sbd
import torch
from torch import nn
from torch.utils.data import Dataset

from seismic_ml.config import RunConfig
from seismic_ml.data.budget import parse_budget
from seismic_ml.data.waveforms import WaveformSource, open_waveforms
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


def batches(windows: Dataset, batch_size: int) -> Iterator[tuple[list[int], dict[str, Any]]]:
    """The rows and batches of a batched window set, in its fixed order; the next batch is cut
    in a thread while the caller runs the model on this one (reads and copies release the GIL)."""
    groups = [
        list(range(begin, min(begin + batch_size, len(windows))))
        for begin in range(0, len(windows), batch_size)
    ]
    if not groups:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="windows") as pool:
        pending = pool.submit(windows.__getitem__, groups[0])
        for rows, following in zip(groups, [*groups[1:], None], strict=True):
            batch = pending.result()
            if following is not None:
                pending = pool.submit(windows.__getitem__, following)
            yield rows, batch


def open_split(data: sbd.WaveformDataset, cfg: RunConfig) -> WaveformSource:
    """The evaluated split's waveforms, preloaded within the run's memory budget or streamed."""
    return open_waveforms(data, parse_budget(cfg.data.memory_budget), split_name(data))


def split_name(data: sbd.WaveformDataset) -> str:
    """The split the rows come from (test, dev ...), or "evaluated" when they mix or do not say."""
    names = data.metadata["split"].unique() if "split" in data.metadata else []
    return str(names[0]) if len(names) == 1 else "evaluated"


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
