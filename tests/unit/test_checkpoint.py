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


class WritesMarker:
    """Unpickles into open(marker, 'w'): what an attacker would plant as a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_checkpoint_with_code_is_refused_in_one_line_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "loop": WritesMarker(marker)}, path)
    with pytest.raises(SeismicMLError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "refusing to unpickle" in message and "io.open" in message
    assert "\n" not in message
    assert not marker.exists()


class RunsCommand:
    """Unpickles into os.system(...): a module torch 2.13 blocks by name ("unsupported GLOBAL")."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


def test_checkpoint_calling_a_blocked_module_is_named_not_called_unreadable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "loop": RunsCommand()}, path)
    with pytest.raises(SeismicMLError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "refusing to unpickle" in message and "system" in message, message
    assert "\n" not in message


def test_trainer_snapshot_loads_weights_only(tmp_path: Path, tiny_dataset: str) -> None:
    from seismic_ml.config import with_model_defaults
    from seismic_ml.training.train import build_trainer
    from tests.conftest import tiny_run_config

    trainer = build_trainer(with_model_defaults(tiny_run_config()))
    trainer.fit([])
    path = save_checkpoint(trainer.state_dict(), tmp_path / "last.pt")
    state = torch.load(path, weights_only=True)  # raises if anything but plain data is inside
    assert state["loop"]["epoch"] == 1 and state["loop"]["history"][0]["epoch"] == 1
    resumed = build_trainer(with_model_defaults(tiny_run_config()))
    resumed.load_state_dict(load_checkpoint(path))
    assert resumed.state.step == trainer.state.step
    assert resumed.schedule.lr == trainer.schedule.lr
