"""The loop's MLflow callback: batched per-step metrics, epoch metrics, checkpoint artifacts."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from seismic_ml.training.checkpoint import save_checkpoint
from seismic_ml.training.loop import Trainer

MAX_BATCH = 1000
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_NAME = "last.pt"
log = logging.getLogger(__name__)


class MlflowLogger:
    """Buffers per-step `lr` and `train/loss` and sends them with log_batch, not one by one.

    A resumed run replays the steps after its last checkpoint; those already in the run
    (up to logged_step / logged_epoch) are not logged twice.
    """

    def __init__(
        self, run_id: str, logged_step: int = -1, logged_epoch: int = 0, flush_every: int = 200
    ) -> None:
        self.run_id = run_id
        self.client = MlflowClient()
        self.logged_step = logged_step
        self.logged_epoch = logged_epoch
        self.flush_every = flush_every
        self.buffer: list[Metric] = []

    def on_step(self, trainer: Trainer, lr: float, loss: float) -> None:
        """Queue the step's learning rate and loss (step = optimizer steps before this one)."""
        step = trainer.state.step - 1
        if step <= self.logged_step:
            return
        now = int(time.time() * 1000)
        self.buffer.append(Metric("lr", lr, now, step))
        self.buffer.append(Metric("train/loss", loss, now, step))
        if len(self.buffer) >= self.flush_every:
            self.flush()

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float], is_best: bool) -> None:
        """Epoch metrics at step = epoch number; the mean training loss as train/epoch_loss."""
        epoch = trainer.state.epoch
        if epoch <= self.logged_epoch:
            return
        now = int(time.time() * 1000)
        for key, value in metrics.items():
            name = "train/epoch_loss" if key == "train/loss" else key
            self.buffer.append(Metric(name, value, now, epoch))
        self.flush()

    def flush(self) -> None:
        """Send everything buffered, in chunks the server accepts."""
        while self.buffer:
            chunk, self.buffer = self.buffer[:MAX_BATCH], self.buffer[MAX_BATCH:]
            self.client.log_batch(self.run_id, metrics=chunk)

    def flush_quietly(self) -> None:
        """Flush while another error may be propagating: a tracking failure must not mask it."""
        try:
            self.flush()
        except Exception as exc:  # the training error matters more than lost curve points
            log.warning("could not send %d buffered metrics: %s", len(self.buffer), exc)


class CheckpointLogger:
    """Writes the resumable snapshot atomically after each epoch and logs it to the run."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="seismic_ml_ckpt_"))

    def on_step(self, trainer: Trainer, lr: float, loss: float) -> None:
        """Nothing per step."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float], is_best: bool) -> None:
        """Snapshot the trainer as checkpoints/last.pt of the active run."""
        path = save_checkpoint(trainer.state_dict(), self._dir / CHECKPOINT_NAME)
        mlflow.log_artifact(str(path), artifact_path=CHECKPOINT_DIR)
