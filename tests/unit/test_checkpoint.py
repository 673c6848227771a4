"""Checkpoints are atomic: a failed write leaves the previous file whole and no debris."""

from pathlib import Path

import pytest
import torch

from seismic_ml.errors import SeismicMLError
from seismic_ml.training.checkpoint import load_checkpoint, save_checkpoint


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full, say")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"epoch": 2, "bad": Unpicklable()}, path)
    state = load_checkpoint(path)
    assert state["epoch"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_missing_or_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SeismicMLError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(SeismicMLError, match="unreadable"):
        load_checkpoint(broken)
