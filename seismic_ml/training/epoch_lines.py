"""The loop's progress callback: one line per epoch, always, so a log shows how training goes."""

from __future__ import annotations

from typing import Protocol

from seismic_ml import progress

# The headline validation metric shown beside the loss, per task, when the epoch has it.
HEADLINE = ("val/mae", "val/p_residual_median_s")


class _Progress(Protocol):
    epoch: int


class _Settings(Protocol):
    epochs: int


class Counted(Protocol):
    """What the line needs of a trainer: its epochs done and the epochs it trains to."""

    state: _Progress
    cfg: _Settings


class EpochLine:
    """Prints `epoch 3/20  train 0.41  val 0.39  val/mae 0.21  lr 1.0e-03  12.3 s` to stderr."""

    def on_step(self, trainer: object, lr: float, loss: float) -> None:
        """Nothing per step (the bar, on a terminal, is the loop's)."""

    def on_epoch_end(self, trainer: Counted, metrics: dict[str, float], is_best: bool) -> None:
        """One line for the finished epoch."""
        parts = [
            f"epoch {trainer.state.epoch}/{trainer.cfg.epochs}",
            f"train {metrics['train/loss']:.4f}",
            f"val {metrics['val/loss']:.4f}{' *' if is_best else ''}",
        ]
        parts += [f"{key} {metrics[key]:.4f}" for key in HEADLINE if key in metrics]
        parts += [f"lr {metrics['lr_epoch_end']:.1e}", f"{metrics['epoch_time_s']:.1f} s"]
        if "train/windows_per_s" in metrics:
            parts.append(f"{metrics['train/windows_per_s']:.0f} windows/s")
        progress.note("  ".join(parts))
