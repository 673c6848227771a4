"""The loop's MLflow callback: per-step and per-epoch metrics and the checkpoint, via the sender."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from mlflow.entities import Metric

from seismic_ml.tracking.sender import MetricSender

CHECKPOINT_DIR = "checkpoints"


class Progress(Protocol):
    """The loop counters the logger reads."""

    step: int
    epoch: int


class Observed(Protocol):
    """What the logger needs of a trainer: its progress."""

    state: Progress


class MlflowLogger:
    """Queues `lr` and `train/loss` per step and the epoch metrics; the sender batches them.

    A resumed run replays the steps after its last checkpoint; those already in the run
    (up to logged_step / logged_epoch) are not logged twice. After each epoch the checkpoint
    the loop just wrote is uploaded as checkpoints/<name> of the run.
    """

    def __init__(
        self,
        sender: MetricSender,
        checkpoint: Path | None = None,
        logged_step: int = -1,
        logged_epoch: int = 0,
    ) -> None:
        self.sender = sender
        self.checkpoint = checkpoint
        self.logged_step = logged_step
        self.logged_epoch = logged_epoch

    def on_step(self, trainer: Observed, lr: float, loss: float) -> None:
        """Queue the step's learning rate and loss (step = optimizer steps before this one)."""
        self.sender.check_outage(self.checkpoint)
        step = trainer.state.step - 1
        if step <= self.logged_step:
            return
        now = int(time.time() * 1000)
        self.sender.add([Metric("lr", lr, now, step), Metric("train/loss", loss, now, step)])

    def on_epoch_end(self, trainer: Observed, metrics: dict[str, float], is_best: bool) -> None:
        """Epoch metrics at step = epoch number; the mean training loss as train/epoch_loss."""
        epoch = trainer.state.epoch
        if epoch > self.logged_epoch:
            now = int(time.time() * 1000)
            self.sender.add(
                Metric("train/epoch_loss" if key == "train/loss" else key, value, now, epoch)
                for key, value in metrics.items()
            )
        if self.checkpoint is not None:
            self.sender.upload_later(self.checkpoint, CHECKPOINT_DIR)
        self.sender.request_send()
        self.sender.check_outage(self.checkpoint)
