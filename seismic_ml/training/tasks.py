"""What differs between phase picking and magnitude: data loaders, loss and validation metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import seisbench.data as sbd
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from seismic_ml.config import RunConfig
from seismic_ml.data import pipelines
from seismic_ml.data.batches import MagnitudeBatches, PhaseBatches
from seismic_ml.data.budget import parse_budget
from seismic_ml.data.quality import ScreenReport, screen
from seismic_ml.data.registry import get_split
from seismic_ml.data.waveforms import WaveformSource, open_waveforms
from seismic_ml.evaluation.metrics import best_threshold
from seismic_ml.models.magnitude import magnitude_loss

SAMPLING_RATE = 100.0


class Task(Protocol):
    """The task-specific half of training; the loop itself knows nothing of seismology."""

    name: str
    screening: ScreenReport  # traces left out of the train and dev splits by datasets()

    def datasets(self, dataset: sbd.WaveformDataset, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Training generator and deterministic validation generator."""

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Model output in the form the loss wants."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch."""

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Validation metrics over the whole split (without the loss)."""


@dataclass
class PhaseTask:
    """Pick P and S: cross-entropy against Gaussian probabilistic labels."""

    cfg: RunConfig
    name: str = "phase"
    labels: str = "NPS"
    screening: ScreenReport = field(default_factory=ScreenReport)

    def datasets(self, dataset: sbd.WaveformDataset, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Random windows around picks for training, seeded fixed windows for validation."""
        data, seed = self.cfg.data, self.cfg.train.seed
        pipelines.require_pick_columns(dataset)
        train, dev = screened_splits(self, dataset)
        train_source, dev_source = open_split_sources(train, dev, data.memory_budget)
        common = {
            "windowlen": model.in_samples,
            "labels": model.labels,
            "sigma": data.label_sigma,
            "norm": getattr(model, "norm", "std"),
            "seed": seed,
        }
        self.labels = model.labels
        return (
            PhaseBatches(train_source, train, **common),
            PhaseBatches(dev_source, dev, window_seed=seed, **common),
        )

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities per class and sample."""
        return torch.log_softmax(model(x, logits=True), dim=1)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy with soft labels, summed over classes, averaged over samples."""
        return -(target * output).sum(dim=1).mean()

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Per phase: pick residual median and the F1-maximising pick threshold with its F1."""
        result = {}
        for phase in (p for p in "PS" if p in self.labels):
            channel = self.labels.index(phase)
            found = pick_metrics(outputs[:, channel], targets[:, channel])
            result.update({f"{phase.lower()}_{name}": value for name, value in found.items()})
        return result


def pick_metrics(log_prob: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """One phase's (B, T) log-probabilities against its Gaussian labels: residual_median_s on
    windows whose label peaks above 0.5; threshold and f1 as `best_threshold` tunes them."""
    has_pick = target.amax(dim=1) > 0.5
    true = target.argmax(dim=1)
    log_peak, pred = log_prob.max(dim=1)
    result = {}
    if has_pick.any():
        residual = (pred[has_pick] - true[has_pick]).abs().float() / SAMPLING_RATE
        result["residual_median_s"] = float(residual.median())
    onset = torch.where(has_pick, true.double(), torch.nan).numpy()
    peak = log_peak.double().exp().numpy()
    tuned = best_threshold(onset, pred.double().numpy(), peak, SAMPLING_RATE)
    return {**result, "threshold": tuned.threshold, "f1": tuned.f1}


@dataclass
class MagnitudeTask:
    """Regress one magnitude per trace (and optionally its uncertainty)."""

    cfg: RunConfig
    name: str = "magnitude"
    screening: ScreenReport = field(default_factory=ScreenReport)

    def datasets(self, dataset: sbd.WaveformDataset, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Traces with a magnitude and a P pick: random P offset for training, seeded for val."""
        data, seed, length = self.cfg.data, self.cfg.train.seed, model.in_samples
        train, dev = screened_splits(
            self,
            dataset,
            lambda split, name: pipelines.magnitude_subset(split, data.magnitude_type, name),
        )
        train_source, dev_source = open_split_sources(train, dev, data.memory_budget)
        return (
            MagnitudeBatches(train_source, train, length, seed),
            MagnitudeBatches(dev_source, dev, length, seed, window_seed=seed),
        )

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Magnitude (B,) or magnitude and log sigma (B, 2)."""
        return model(x)

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The configured regression loss (mse, huber, gaussian_nll)."""
        return magnitude_loss(self.cfg.model.loss, output, target)

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Per-trace MAE, RMSE and R² of the predicted magnitude."""
        pred = outputs[:, 0] if outputs.ndim == 2 else outputs
        residual = (pred - targets).double()
        variance = float(targets.double().var(unbiased=False))
        mse = float((residual**2).mean())
        return {
            "mae": float(residual.abs().mean()),
            "rmse": mse**0.5,
            "r2": 1.0 - mse / variance if variance > 0 else float("nan"),
        }


def screened_splits(
    task: PhaseTask | MagnitudeTask,
    dataset: sbd.WaveformDataset,
    subset: Callable[[sbd.WaveformDataset, str], sbd.WaveformDataset] = lambda split, _: split,
) -> tuple[sbd.WaveformDataset, sbd.WaveformDataset]:
    """Train and dev splits (narrowed by subset), unusable traces left out, counted on the task."""
    kept, task.screening = [], ScreenReport()
    for name in ("train", "dev"):
        split = subset(get_split(dataset, name, task.cfg.data.max_traces), name)
        split, report = screen(split, name)
        kept.append(split)
        task.screening += report
    return kept[0], kept[1]


def open_split_sources(
    train: sbd.WaveformDataset, dev: sbd.WaveformDataset, budget: str
) -> tuple[WaveformSource, WaveformSource]:
    """Waveform sources of both splits: the training split first takes what the budget holds."""
    budget_bytes = parse_budget(budget)
    train_source = open_waveforms(train, budget_bytes, "train")
    left = budget_bytes - getattr(train_source, "nbytes", budget_bytes)
    return train_source, open_waveforms(dev, max(left, 0), "dev")


TASKS = {"phase": PhaseTask, "magnitude": MagnitudeTask}


def make_task(cfg: RunConfig) -> Task:
    """The task object of a run's model type."""
    return TASKS[cfg.task](cfg)


def make_loaders(
    train_set: Dataset,
    val_set: Dataset,
    batch_size: int,
    num_workers: int,
    seed: int,
    train_sampler: Sampler | None = None,
    val_sampler: Iterable[int] | None = None,
) -> tuple[DataLoader, DataLoader]:
    """Seeded, shuffled training batches and ordered validation batches (or given samplers).

    The datasets cut whole batches (dataset[list of indices]), so the loaders hand them lists
    of indices and do no collation of their own.
    """
    generator = torch.Generator().manual_seed(seed)
    pin = torch.cuda.is_available()
    train_sampler = train_sampler or RandomSampler(train_set, generator=generator)
    val_sampler = val_sampler if val_sampler is not None else range(len(val_set))

    def loader(dataset: Dataset, sampler: Iterable[int], **extra: Any) -> DataLoader:
        batches = BatchSampler(sampler, batch_size, drop_last=False)
        return DataLoader(
            dataset,
            batch_size=None,
            sampler=batches,
            num_workers=num_workers,
            pin_memory=pin,
            **extra,
        )

    return loader(train_set, train_sampler, generator=generator), loader(val_set, val_sampler)


def set_loader_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell the batches' random draws and a distributed sampler which epoch starts."""
    inner = getattr(loader.sampler, "sampler", loader.sampler)
    for target in (loader.dataset, inner):
        if hasattr(target, "set_epoch"):
            target.set_epoch(epoch)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy's global RNG (seisbench augmentations draw from it) and Python's."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
