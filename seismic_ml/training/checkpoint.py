"""Atomic checkpoint files: written to a temporary sibling, fsynced, then renamed into place."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch

from seismic_ml.errors import SeismicMLError


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write state to path so that a crash leaves either the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by save_checkpoint."""
    if not path.is_file():
        raise SeismicMLError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        raise SeismicMLError(f"checkpoint {path} is unreadable: {exc}") from exc


class Snapshotting(Protocol):
    """A trainer whose state can be saved."""

    def state_dict(self) -> dict[str, Any]:
        """The resumable state."""


class CheckpointWriter:
    """Loop callback: after every epoch, the trainer's state written atomically to one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_step(self, trainer: Snapshotting, lr: float, loss: float) -> None:
        """Nothing per step."""

    def on_epoch_end(self, trainer: Snapshotting, metrics: dict[str, float], is_best: bool) -> None:
        """Overwrite the checkpoint with the state after this epoch."""
        save_checkpoint(trainer.state_dict(), self.path)
