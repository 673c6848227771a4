"""The one training loop: warmup and plateau schedule, clipping, early stopping, callbacks."""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from seismic_ml import interrupts, progress
from seismic_ml.config import TrainConfig
from seismic_ml.errors import SeismicMLError
from seismic_ml.training.schedule import WarmupPlateauSchedule
from seismic_ml.training.tasks import Task, set_loader_epoch

log = logging.getLogger(__name__)

OPTIMIZERS = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "SGD": torch.optim.SGD}


@dataclass
class LoopState:
    """Progress that a checkpoint must carry for an exact resume."""

    epoch: int = 0
    step: int = 0
    best_val_loss: float = math.inf
    best_epoch: int = -1
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


class Callback(Protocol):
    """Observer of the loop: tracking, checkpoints, Optuna pruning."""

    def on_step(self, trainer: Trainer, lr: float, loss: float) -> None:
        """After each optimizer step."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float], is_best: bool) -> None:
        """After validation of each epoch; may raise to stop (pruning)."""


class Trainer:
    """Holds the model, optimizer, schedule and progress; `fit` runs the epochs."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        train_loader: DataLoader,
        val_loader: DataLoader,
        cfg: TrainConfig,
        device: torch.device,
        optimizer: torch.optim.Optimizer | None = None,  # built on model's parameters
    ) -> None:
        self.model = model.to(device)
        self.net: nn.Module = self.model  # what training steps call (DDP's wrapper under torchrun)
        self.task = task
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.cfg = cfg
        self.device = device
        self.optimizer = make_optimizer(model, cfg) if optimizer is None else optimizer
        self.steps_per_epoch = steps_per_epoch(len(train_loader), cfg.max_steps_per_epoch)
        self.schedule = WarmupPlateauSchedule(
            self.optimizer,
            peak_lr=cfg.learning_rate,
            warmup_steps=warmup_steps(cfg, self.steps_per_epoch),
            patience=cfg.scheduler_patience,
            factor=cfg.scheduler_factor,
            threshold=cfg.scheduler_threshold,
        )
        self.windows_seen = 0  # in the current epoch, on this process
        self.bf16 = resolve_precision(cfg.precision, device) == "bf16"
        self.state = LoopState()
        self.best_weights: dict[str, torch.Tensor] | None = None

    def fit(self, callbacks: Sequence[Callback] = ()) -> LoopState:
        """Train to the configured epochs or early stopping; a signal stops it at a step end."""
        with interrupts.deferred():
            while self.state.epoch < self.cfg.epochs and not self.state.stopped_early:
                interrupts.check()
                self._fit_epoch(callbacks)
        return self.state

    def _fit_epoch(self, callbacks: Sequence[Callback]) -> None:
        """Train and validate one epoch, then tell the callbacks."""
        started = time.perf_counter()
        self._seed_epoch()
        train_loss = self.train_epoch(callbacks)
        train_s = time.perf_counter() - started
        interrupts.check()
        metrics = {"train/loss": train_loss, **self.validate()}
        metrics["train/windows_per_s"] = self.windows_seen / train_s
        metrics["epoch_time_s"] = time.perf_counter() - started
        metrics["lr_epoch_end"] = self.schedule.lr
        is_best = self._record_epoch(metrics)
        for callback in callbacks:
            callback.on_epoch_end(self, metrics, is_best)

    def train_epoch(self, callbacks: Sequence[Callback]) -> float:
        """One pass over the training loader; returns the mean loss."""
        self.model.train()
        losses = []
        self.windows_seen = 0
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {self.state.epoch + 1}/{self.cfg.epochs}",
            disable=not progress.bars(),
            leave=False,
        )
        for batch in self.train_loader:
            if len(losses) >= self.steps_per_epoch:
                break
            lr = self.schedule.before_step()
            loss = self._step(batch)
            self.windows_seen += len(batch["X"])
            self.schedule.after_step()
            self.state.step += 1
            losses.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            for callback in callbacks:
                callback.on_step(self, lr, loss)
            interrupts.check()
        bar.close()
        return float(np.mean(losses))

    def _step(self, batch: dict[str, torch.Tensor]) -> float:
        x, y = self._to_device(batch)
        with self.autocast():
            output = self.task.forward(self.net, x)
        loss = self.task.loss(output.float(), y)
        if not torch.isfinite(loss):
            raise SeismicMLError(f"training diverged: loss {loss.item()} at step {self.state.step}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return float(loss.detach())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and task metrics on the whole validation split, in a fixed order."""
        self.model.eval()
        outputs, targets, losses, sizes = [], [], [], []
        for batch in self.val_loader:
            x, y = self._to_device(batch)
            with self.autocast():
                output = self.task.forward(self.model, x).float()
            losses.append(float(self.task.loss(output, y)))
            sizes.append(len(x))
            outputs.append(output.cpu())
            targets.append(y.cpu())
        outputs, targets, losses, sizes = self._gather_val((outputs, targets, losses, sizes))
        metrics = self.task.metrics(torch.cat(outputs), torch.cat(targets))
        val_loss = float(np.average(losses, weights=sizes))
        return {"val/loss": val_loss, **{f"val/{k}": v for k, v in metrics.items()}}

    def _to_device(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets on the device (asynchronous copies from pinned memory on a GPU)."""
        return (
            batch["X"].to(self.device, non_blocking=True),
            batch["y"].to(self.device, non_blocking=True),
        )

    def autocast(self) -> torch.autocast:
        """bfloat16 autocast of the forward pass under --precision bf16; a no-op in fp32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _gather_val(self, parts: tuple[list, ...]) -> tuple[list, ...]:
        """Validation outputs, targets, losses and sizes of the whole split (here: this one's)."""
        return parts

    def _record_epoch(self, metrics: dict[str, float]) -> bool:
        state = self.state
        state.epoch += 1
        state.history.append({"epoch": state.epoch, "step": state.step, **metrics})
        self.schedule.epoch_end(metrics["val/loss"])
        is_best = metrics["val/loss"] < state.best_val_loss
        if is_best:
            state.best_val_loss, state.best_epoch = metrics["val/loss"], state.epoch
            state.epochs_without_improvement = 0
            self.best_weights = {
                k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
            }
        else:
            state.epochs_without_improvement += 1
        patience = self.cfg.early_stopping_patience
        state.stopped_early = patience > 0 and state.epochs_without_improvement >= patience
        return is_best

    def _seed_epoch(self) -> None:
        """Augmentations draw from numpy's global RNG: seed it per epoch so resume repeats it."""
        np.random.seed((self.cfg.seed * 1_000_003 + self.state.epoch) % 2**32)
        self.train_loader.generator.manual_seed(self.cfg.seed + self.state.epoch)
        set_loader_epoch(self.train_loader, self.state.epoch)

    def state_dict(self) -> dict[str, Any]:
        """A resumable snapshot of tensors, numbers, strings, lists and dicts (weights-only)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "loop": dataclasses.asdict(self.state),
            "best_weights": self.best_weights,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, snapshot: dict[str, Any]) -> None:
        """Continue from a snapshot written by state_dict."""
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        self.schedule.load_state_dict(snapshot["schedule"])
        self.state = LoopState(**snapshot["loop"])
        self.state.stopped_early = False
        self.best_weights = snapshot["best_weights"]
        torch.set_rng_state(snapshot["torch_rng"])


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer at the peak learning rate."""
    kwargs: dict[str, Any] = {"lr": cfg.learning_rate, "weight_decay": cfg.weight_decay}
    if cfg.optimizer == "SGD":
        kwargs["momentum"] = 0.9
    return OPTIMIZERS[cfg.optimizer](model.parameters(), **kwargs)


def steps_per_epoch(n_batches: int, cap: int) -> int:
    """Optimizer steps in one epoch: the loader's length, or the cap when smaller."""
    if n_batches == 0:
        raise SeismicMLError("the training split is empty: no batches to train on")
    return min(n_batches, cap) if cap > 0 else n_batches


def warmup_steps(cfg: TrainConfig, per_epoch: int) -> int:
    """Warmup in optimizer steps: at least one unless warmup_epochs is 0; warns past the run."""
    if cfg.warmup_epochs > cfg.epochs:
        log.warning(
            "warmup_epochs %g is longer than the run (%d epochs): the learning rate never "
            "reaches its peak %g",
            cfg.warmup_epochs,
            cfg.epochs,
            cfg.learning_rate,
        )
    if cfg.warmup_epochs <= 0:
        return 0
    return max(1, round(cfg.warmup_epochs * per_epoch))


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bfloat16 natively (a GPU that supports it; a CPU with
    AVX512-BF16 or AMX), where mixed precision pays; elsewhere it would only emulate it."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(name: str, device: torch.device) -> str:
    """fp32 or bf16: auto is bf16 where the device has native bfloat16."""
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type not in ("cpu", "cuda"):
        raise SeismicMLError(f"precision bf16 is not supported on device {device.type!r}")
    return name


def resolve_device(name: str) -> torch.device:
    """auto picks CUDA, then MPS, then CPU; an unavailable device is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SeismicMLError(f"device {name!r} requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise SeismicMLError(f"unknown device {name!r}") from exc
