"""Per-step linear warmup composed with ReduceLROnPlateau, without one undoing the other."""

from __future__ import annotations

from typing import Any

import torch

WARMUP_START_FRACTION = 0.1


class WarmupPlateauSchedule:
    """Warmup from 10% to 100% of the peak lr per optimizer step, then plateau reductions.

    The plateau scheduler is torch's own. A reduction it makes (even during warmup) scales
    the peak that warmup climbs towards, so warmup never restores a reduced learning rate.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        peak_lr: float,
        warmup_steps: int,
        patience: int,
        factor: float,
        threshold: float = 1e-4,
    ) -> None:
        self.optimizer = optimizer
        self.peak_lr = peak_lr
        self.warmup_steps = max(int(warmup_steps), 0)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", patience=patience, factor=factor, threshold=threshold
        )
        self.step = 0
        self._set_lr(self.lr_at(0))

    def lr_at(self, step: int) -> float:
        """The learning rate warmup wants at a step (the peak once warmup is over)."""
        if step >= self.warmup_steps:
            return self.peak_lr
        fraction = WARMUP_START_FRACTION + (1 - WARMUP_START_FRACTION) * step / self.warmup_steps
        return self.peak_lr * fraction

    @property
    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        return self.optimizer.param_groups[0]["lr"]

    def before_step(self) -> float:
        """Set the lr for the coming optimizer step; returns it."""
        if self.step <= self.warmup_steps:
            self._set_lr(self.lr_at(self.step))
        return self.lr

    def after_step(self) -> None:
        """Count an optimizer step."""
        self.step += 1

    def epoch_end(self, val_loss: float) -> None:
        """Let the plateau scheduler see the validation loss; a reduction lowers the peak too."""
        before = self.lr
        self.plateau.step(val_loss)
        after = self.lr
        if after < before:
            self.peak_lr *= after / before

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the schedule after a resume."""
        return {"peak_lr": self.peak_lr, "step": self.step, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the schedule saved by state_dict."""
        self.peak_lr = state["peak_lr"]
        self.step = state["step"]
        self.plateau.load_state_dict(state["plateau"])

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
