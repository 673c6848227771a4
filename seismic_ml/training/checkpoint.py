"""Atomic checkpoint files: written to a temporary sibling, fsynced, then renamed into place."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch

from seismic_ml.errors import SeismicMLError, first_line


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
    """Read a checkpoint as tensors and plain data only (torch weights-only): nothing runs."""
    if not path.is_file():
        raise SeismicMLError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch words it "Unsupported global: GLOBAL x.y" or "unsupported GLOBAL x.y whose module
        # x is blocked" (a blocked module such as os/posix, under torch 2.13)
        found = re.search(r"unsupported global(?:: GLOBAL)? (\S+)", str(exc), re.IGNORECASE)
        if found is None:
            raise SeismicMLError(f"checkpoint {path} is unreadable: not a checkpoint") from None
        raise SeismicMLError(
            f"checkpoint {path.name} holds more than tensors and plain data "
            f"({found.group(1)}): refusing to unpickle it"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise SeismicMLError(f"checkpoint {path} is unreadable: {first_line(exc)}") from exc
    if not isinstance(state, dict):
        raise SeismicMLError(f"checkpoint {path.name} is not a training snapshot")
    return state


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
        """Overwrite the checkpoint with the state after this epoch (one line if it cannot be)."""
        try:
            save_checkpoint(trainer.state_dict(), self.path)
        except (OSError, RuntimeError) as exc:
            cause = os_error(exc)
            if cause is None:
                raise
            kept = "the previous one is kept" if self.path.exists() else "there is none yet"
            raise SeismicMLError(
                f"cannot write the checkpoint {self.path}: {cause.strerror or cause}; {kept}: "
                "free space there (or set SEISMIC_ML_HOME elsewhere), then resume with --resume"
            ) from None


def os_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind an exception (torch.save wraps a failed write in a RuntimeError)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError):
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None
