"""The reference loops: seisbench's tutorial-style training loop, the compute-only step, and the
package's data path alone, each returning windows per second."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import seisbench.data as sbd
import seisbench.util
import torch
from torch import nn
from torch.utils.data import DataLoader

from seismic_ml.data import pipelines
from seismic_ml.data.registry import load_dataset
from seismic_ml.models.registry import build_model
from seismic_ml.training.loop import make_optimizer
from seismic_ml.training.tasks import Task, make_task, screened_splits, seed_everything

Batch = dict[str, torch.Tensor]
TUTORIAL_WORKERS = 2


def train_split(cfg: Any) -> sbd.WaveformDataset:
    """The training split train() uses: screened, and for magnitude only usable traces."""
    task, dataset = make_task(cfg), load_dataset(cfg.data.dataset)
    if cfg.task != "magnitude":
        return screened_splits(task, dataset)[0]

    def usable(split: sbd.WaveformDataset, name: str) -> sbd.WaveformDataset:
        return pipelines.magnitude_subset(split, cfg.data.magnitude_type, name)

    return screened_splits(task, dataset, usable)[0]


def tutorial_loader(cfg: Any, model: nn.Module) -> DataLoader:
    """seisbench's tutorial data path: waveforms preloaded in seisbench's full cache, the task's
    GenericGenerator, a shuffling DataLoader with 2 workers seeded by worker_seeding."""
    split = train_split(cfg)
    split.cache = "full"
    split.preload_waveforms()
    if cfg.task == "phase":
        norm = getattr(model, "norm", "std")
        args = (model.labels, model.in_samples, cfg.data.label_sigma, norm)
        generator = pipelines.phase_train_generator(split, *args)
    else:
        generator = pipelines.magnitude_train_generator(split, model.in_samples)
    return DataLoader(
        generator,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        num_workers=TUTORIAL_WORKERS,
        worker_init_fn=seisbench.util.worker_seeding,
    )


def model_and_task(cfg: Any) -> tuple[nn.Module, Task]:
    """The seeded model of the config in training mode, and the task that gives its loss."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model_type, cfg.model).train()
    task = make_task(cfg)
    if hasattr(task, "labels"):
        task.labels = model.labels
    return model, task


def tutorial_step(model: nn.Module, task: Task, lr: float) -> Callable[[Batch], None]:
    """The tutorial's step: forward, the task's loss, zero_grad, backward, Adam."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def step(batch: Batch) -> None:
        loss = task.loss(task.forward(model, batch["X"]), batch["y"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def capped(loader: Iterable[Batch], steps: int) -> Iterator[Batch]:
    """The first `steps` batches of one pass over the loader (all of them when steps is 0)."""
    for i, batch in enumerate(loader):
        if steps and i >= steps:
            return
        yield batch


def rate_over_epochs(
    loader: Iterable[Batch], consume: Callable[[Batch], None], steps: int, epochs: int
) -> float:
    """Windows per second of consume() over fresh passes of the loader, after a warm-up batch."""
    consume(next(iter(loader)))
    windows, start = 0, time.perf_counter()
    for _ in range(epochs):
        for batch in capped(loader, steps):
            consume(batch)
            windows += len(batch["X"])
    return windows / (time.perf_counter() - start)


def bare_loop_rate(cfg: Any, steps: int, epochs: int) -> float:
    """Windows/s of seisbench's tutorial-style loop on the config's data, model, batch and seed."""
    model, task = model_and_task(cfg)
    loader = tutorial_loader(cfg, model)
    step = tutorial_step(model, task, cfg.train.learning_rate)
    return rate_over_epochs(loader, step, steps, epochs)


def tutorial_data_rate(cfg: Any, steps: int, epochs: int) -> float:
    """Windows/s the tutorial's loader delivers alone (no model step)."""
    model, _ = model_and_task(cfg)
    return rate_over_epochs(tutorial_loader(cfg, model), lambda _: None, steps, epochs)


def random_batch(cfg: Any, model: nn.Module) -> Batch:
    """Random inputs and plausible targets of the training batch's shape."""
    batch, length = cfg.train.batch_size, model.in_samples
    x = torch.randn(batch, 3, length)
    if cfg.task == "phase":
        y = torch.softmax(torch.randn(batch, len(model.labels), length), dim=1)
    else:
        y = torch.rand(batch) * 5
    return {"X": x, "y": y}


def trainer_step(model: nn.Module, task: Task, cfg: Any, bf16: bool) -> Callable[[Batch], None]:
    """The training loop's step (autocast forward, fp32 loss, clipping, configured optimizer)."""
    optimizer = make_optimizer(model, cfg.train)
    clip = cfg.train.grad_clip

    def step(batch: Batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            output = task.forward(model, batch["X"])
        loss = task.loss(output.float(), batch["y"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    return step


def compute_rate(cfg: Any, steps: int, bf16: bool) -> float:
    """Windows/s of the bare training step on random tensors (no data, no tracking)."""
    model, task = model_and_task(cfg)
    batch = random_batch(cfg, model)
    step = trainer_step(model, task, cfg, bf16)
    step(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step(batch)
    return steps * cfg.train.batch_size / (time.perf_counter() - start)


def package_data_rate(cfg: Any, steps: int, epochs: int) -> float:
    """Windows/s of the training loader build_trainer(cfg) makes, iterated without a model."""
    from seismic_ml.training.train import build_trainer

    seed_everything(cfg.train.seed)
    loader = build_trainer(cfg).train_loader
    return rate_over_epochs(loader, lambda _: None, steps, epochs)


def steps_per_epoch(n_windows: int, batch: int, cap: int) -> int:
    """Optimizer steps of one epoch over n windows (capped when cap > 0)."""
    n = math.ceil(n_windows / batch)
    return min(n, cap) if cap else n
