"""What differs between phase picking and magnitude: data loaders, loss and validation metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import seisbench.data as sbd
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler

from seismic_ml import progress
from seismic_ml.config import RunConfig
from seismic_ml.data import pipelines
from seismic_ml.data.batches import MagnitudeBatches, PhaseBatches
from seismic_ml.data.budget import parse_budget
from seismic_ml.data.quality import BlockFlags, Screening, ScreenReport, reading, screen
from seismic_ml.data.quality import waveform_flags as read_waveform_flags
from seismic_ml.data.registry import get_split
from seismic_ml.data.screen_cache import dataset_identity, metadata_digest
from seismic_ml.data.waveforms import (
    PreloadedWaveforms,
    WaveformSource,
    open_waveforms,
    split_budgets,
    waveform_bytes,
)
from seismic_ml.models.magnitude import magnitude_loss
from seismic_ml.pick_scores import best_threshold

SAMPLING_RATE = 100.0


class Task(Protocol):
    """The task-specific half of training; the loop itself knows nothing of seismology."""

    name: str
    screening: ScreenReport  # traces left out of the train and dev splits by datasets()
    prepared: PreparedSplits | None  # the splits behind the last datasets() or prepare()

    def datasets(self, dataset: sbd.WaveformDataset, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Training windows (random) and validation windows (seeded, the same every epoch)."""

    def prepare(self, load: Callable[[], sbd.WaveformDataset]) -> PreparedSplits:
        """Train and dev splits screened and opened (load: the dataset, called when needed)."""

    def windows(self, prepared: PreparedSplits, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Training and validation batches cut from prepared splits."""

    def forward(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Model output in the form the loss wants."""

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch."""

    def metrics(self, outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """Validation metrics over the whole split (without the loss)."""


@dataclass
class SplitTask:
    """What both tasks share: their train and dev splits prepared once, counted on the task."""

    cfg: RunConfig
    screening: ScreenReport = field(default_factory=ScreenReport)
    prepared: PreparedSplits | None = None

    def datasets(self, dataset: sbd.WaveformDataset, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Training and validation batches of a loaded dataset."""
        return self.windows(self.prepare(lambda: dataset), model)

    def prepare(self, load: Callable[[], sbd.WaveformDataset]) -> PreparedSplits:
        """Train and dev splits screened and opened, or reused (see reuse_prepared_splits)."""
        self.prepared = prepare_splits(self.cfg, lambda: self.check(load()), self.rows)
        self.screening = self.prepared.screening
        return self.prepared

    def check(self, dataset: sbd.WaveformDataset) -> sbd.WaveformDataset:
        """The dataset, refused in one line when the task cannot use it."""
        return dataset

    def rows(self, split: sbd.WaveformDataset, name: str) -> sbd.WaveformDataset:
        """The rows of a split the task trains on."""
        return split

    def windows(self, prepared: PreparedSplits, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Training and validation batches cut from prepared splits."""
        raise NotImplementedError


@dataclass
class PhaseTask(SplitTask):
    """Pick P and S: cross-entropy against Gaussian probabilistic labels."""

    name: str = "phase"
    labels: str = "NPS"

    def check(self, dataset: sbd.WaveformDataset) -> sbd.WaveformDataset:
        """A dataset with P and S pick columns."""
        pipelines.require_pick_columns(dataset)
        return dataset

    def windows(self, prepared: PreparedSplits, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Random windows around picks for training, seeded fixed windows for validation."""
        data, seed = self.cfg.data, self.cfg.train.seed
        train, dev = prepared.train, prepared.dev
        common = {
            "windowlen": model.in_samples,
            "labels": model.labels,
            "sigma": data.label_sigma,
            "norm": getattr(model, "norm", "std"),
            "seed": seed,
        }
        self.labels = model.labels
        return (
            PhaseBatches(train.source, train.dataset, **common),
            PhaseBatches(dev.source, dev.dataset, window_seed=seed, **common),
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
class MagnitudeTask(SplitTask):
    """Regress one magnitude per trace (and optionally its uncertainty)."""

    name: str = "magnitude"

    def rows(self, split: sbd.WaveformDataset, name: str) -> sbd.WaveformDataset:
        """Traces with a magnitude (of the wanted type) and a P pick."""
        return pipelines.magnitude_subset(split, self.cfg.data.magnitude_type, name)

    def windows(self, prepared: PreparedSplits, model: nn.Module) -> tuple[Dataset, Dataset]:
        """Random P offset for training, seeded for validation."""
        seed, length = self.cfg.train.seed, model.in_samples
        train, dev = prepared.train, prepared.dev
        return (
            MagnitudeBatches(train.source, train.dataset, length, seed),
            MagnitudeBatches(dev.source, dev.dataset, length, seed, window_seed=seed),
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


@dataclass
class PreparedSplit:
    """One split ready to cut windows from: its kept rows, their waveforms, how it was screened."""

    name: str
    dataset: sbd.WaveformDataset  # the rows kept by screening
    source: WaveformSource
    report: ScreenReport
    key: str  # the screening report's cache key
    origin: str  # screened (read now), cached (a kept report), reused (earlier in this process)
    digest: str = ""  # metadata_digest of the kept rows (a run's dataset input), reused with them

    def params(self) -> dict[str, str]:
        """How the split was prepared, as MLflow params."""
        kind = "preloaded" if isinstance(self.source, PreloadedWaveforms) else "streamed"
        return {
            f"data.{self.name}_screening_key": self.key,
            f"data.{self.name}_screening": self.origin,
            f"data.{self.name}_waveforms": kind,
        }


@dataclass
class PreparedSplits:
    """The train and dev splits of a run, and when their preparation began."""

    train: PreparedSplit
    dev: PreparedSplit
    started: float  # time.perf_counter() at the start of data preparation
    identity: dict[str, Any]  # the dataset files' identity when they were read

    @property
    def screening(self) -> ScreenReport:
        """Traces left out of both splits."""
        return self.train.report + self.dev.report

    def params(self) -> dict[str, str]:
        """Both splits' screening keys, origins and waveform sources, as MLflow params."""
        return {**self.train.params(), **self.dev.params()}

    def reused(self, started: float) -> PreparedSplits:
        """The same splits, marked reused, for a preparation that began at started."""
        again = [replace(split, origin="reused") for split in (self.train, self.dev)]
        return PreparedSplits(*again, started, self.identity)


Rows = Callable[[sbd.WaveformDataset, str], sbd.WaveformDataset]


def prepare_splits(
    cfg: RunConfig, load: Callable[[], sbd.WaveformDataset], rows: Rows
) -> PreparedSplits:
    """Train and dev splits screened (once per dataset file) and opened (one read per split);
    inside reuse_prepared_splits() the last ones are reused while data settings and files hold."""
    started = time.perf_counter()
    key = data_key(cfg)
    kept = _REUSE.find(key)
    if kept is not None:
        return kept.reused(started)
    _REUSE.clear()  # the old splits go before new ones are read
    progress.note(f"loading {cfg.data.dataset}")
    dataset = load()
    screenings = [
        Screening.start(rows(get_split(dataset, name, cfg.data.max_traces), name), name)
        for name in ("train", "dev")
    ]
    sizes = [_bytes_to_read(s) for s in screenings]
    train_budget, dev_budget = split_budgets(*sizes, parse_budget(cfg.data.memory_budget))
    train = open_screened(screenings[0], train_budget, evict=True)
    dev = open_screened(screenings[1], dev_budget, evict=False)  # read in order every epoch
    prepared = PreparedSplits(train, dev, started, dataset_identity(dataset.path))
    _REUSE.keep(key, prepared)
    return prepared


def _bytes_to_read(screening: Screening) -> int:
    """Memory the rows a split reads next take preloaded."""
    data = screening.to_read()
    with reading(data):
        return waveform_bytes(data)


def open_screened(screening: Screening, budget: int, evict: bool) -> PreparedSplit:
    """A split's kept rows and their waveform source. Waveform verdicts not known yet come from
    the one read: the preload's blocks when the split fits the budget, else a screening pass."""
    data, name, source = screening.to_read(), screening.split, None
    if not screening.flags.waveforms and _bytes_to_read(screening) <= budget:
        seen = BlockFlags(len(data))
        with reading(data):
            source = open_waveforms(data, budget, name, on_block=seen)
        screening.add_waveforms(seen.nonfinite, seen.zero)
        source = _select(source, screening.flags.keep[screening.flags.readable])
    elif not screening.flags.waveforms:
        screening.add_waveforms(*read_waveform_flags(data, name))
    kept, report = screening.finish()
    if isinstance(source, PreloadedWaveforms):  # read while screening: keep its kept rows
        source.keep_copy(kept)
    if source is None:
        with reading(kept):
            source = open_waveforms(kept, budget, name, evict=evict)
    digest = metadata_digest(kept.metadata)
    return PreparedSplit(name, kept, source, report, screening.key, screening.origin, digest)


def _select(source: WaveformSource, keep: np.ndarray) -> WaveformSource:
    """The preloaded source's kept rows (it is one: the preload decided by the same budget)."""
    if not isinstance(source, PreloadedWaveforms):
        raise TypeError("screening while preloading needs a preloaded source")
    return source if keep.all() else source.select(keep)


def data_key(cfg: RunConfig) -> tuple[str, ...]:
    """What decides a run's prepared splits: task, dataset, max traces, magnitude type (for
    magnitude), memory budget as given (50% of what is free now would change with each trial)."""
    data = cfg.data
    magnitude_type = data.magnitude_type if cfg.task == "magnitude" else ""
    return (cfg.task, data.dataset, str(data.max_traces), magnitude_type, data.memory_budget)


class _ReusedSplits:
    """The prepared splits a process keeps for its next run while reuse is switched on."""

    def __init__(self) -> None:
        self.depth = 0  # open reuse_prepared_splits() contexts
        self.key: tuple[str, ...] | None = None
        self.splits: PreparedSplits | None = None

    def find(self, key: tuple[str, ...]) -> PreparedSplits | None:
        """The kept splits of this key, when their dataset files are unchanged."""
        if self.splits is None or key != self.key:
            return None
        if dataset_identity(self.splits.identity["path"]) != self.splits.identity:
            self.clear()
            return None
        return self.splits

    def keep(self, key: tuple[str, ...], splits: PreparedSplits) -> None:
        """Keep the splits for the next run, when reuse is on."""
        if self.depth:
            self.key, self.splits = key, splits

    def clear(self) -> None:
        """Let the kept splits' memory go."""
        self.key, self.splits = None, None


_REUSE = _ReusedSplits()


@contextmanager
def reuse_prepared_splits() -> Iterator[None]:
    """Inside, each train() of this process reuses the previous one's screened and preloaded
    train and dev splits when its data settings (data_key) and the dataset files are the same;
    a run with other settings replaces them; they are let go when the last context exits."""
    _REUSE.depth += 1
    try:
        yield
    finally:
        _REUSE.depth -= 1
        if not _REUSE.depth:
            _REUSE.clear()


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
