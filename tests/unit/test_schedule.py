"""Warmup per optimizer step composed with ReduceLROnPlateau."""

import logging

import pytest
import torch

from seismic_ml.config import TrainConfig
from seismic_ml.training.loop import warmup_steps
from seismic_ml.training.schedule import WarmupPlateauSchedule


def make(warmup_steps: int = 10, patience: int = 0, factor: float = 0.5) -> WarmupPlateauSchedule:
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(params, lr=1.0)
    return WarmupPlateauSchedule(optimizer, 1e-3, warmup_steps, patience, factor)


def run_steps(schedule: WarmupPlateauSchedule, n: int) -> list[float]:
    lrs = []
    for _ in range(n):
        lrs.append(schedule.before_step())
        schedule.after_step()
    return lrs


def test_warmup_rises_linearly_from_ten_percent_to_the_peak() -> None:
    lrs = run_steps(make(warmup_steps=10), 15)
    assert lrs[0] == pytest.approx(1e-4)
    assert all(b > a for a, b in zip(lrs[:10], lrs[1:11]))
    assert lrs[10:] == pytest.approx([1e-3] * 5)
    assert lrs[5] == pytest.approx(1e-4 + 0.9e-3 * 0.5)


def test_plateau_reduction_after_warmup_holds() -> None:
    schedule = make(warmup_steps=4, patience=0)
    run_steps(schedule, 5)
    schedule.epoch_end(1.0)
    schedule.epoch_end(2.0)
    assert schedule.lr == pytest.approx(5e-4)
    assert run_steps(schedule, 10) == pytest.approx([5e-4] * 10)


def test_plateau_reduction_during_warmup_is_not_undone() -> None:
    schedule = make(warmup_steps=10, patience=0)
    run_steps(schedule, 5)
    schedule.epoch_end(1.0)
    schedule.epoch_end(2.0)
    lrs = run_steps(schedule, 10)
    assert max(lrs) == pytest.approx(5e-4)
    assert lrs[-1] == pytest.approx(5e-4)


def test_zero_warmup_starts_at_the_peak() -> None:
    assert run_steps(make(warmup_steps=0), 3) == pytest.approx([1e-3] * 3)


def test_state_dict_round_trip_continues_the_schedule() -> None:
    schedule = make(warmup_steps=10, patience=0)
    run_steps(schedule, 3)
    schedule.epoch_end(1.0)
    schedule.epoch_end(2.0)
    other = make(warmup_steps=10, patience=0)
    other.load_state_dict(schedule.state_dict())
    assert run_steps(other, 8) == pytest.approx(run_steps(schedule, 8))


@pytest.mark.parametrize(
    ("warmup_epochs", "per_epoch", "steps"),
    [(0.0, 10, 0), (0.5, 10, 5), (0.25, 1, 1), (0.01, 3, 1), (2.0, 3, 6)],
)
def test_warmup_epochs_become_at_least_one_step(
    warmup_epochs: float, per_epoch: int, steps: int
) -> None:
    cfg = TrainConfig(epochs=2, learning_rate=1e-3, warmup_epochs=warmup_epochs)
    assert warmup_steps(cfg, per_epoch) == steps


def test_a_warmup_longer_than_the_run_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        warmup_steps(TrainConfig(epochs=2, learning_rate=1e-3, warmup_epochs=2.0), 4)
        assert not caplog.records
        warmup_steps(TrainConfig(epochs=2, learning_rate=1e-3, warmup_epochs=5.0), 4)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "warmup_epochs 5 is longer than the run (2 epochs)" in caplog.text


def test_a_two_epoch_run_reaches_its_peak_after_a_quarter_warmup() -> None:
    cfg = TrainConfig(epochs=2, learning_rate=1e-3, warmup_epochs=0.5)
    lrs = run_steps(make(warmup_steps=warmup_steps(cfg, 3)), 2 * 3)
    assert lrs[0] == pytest.approx(1e-4)
    assert max(lrs) == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-3)
