"""What records a training: the protocol `train()` is handed, and a recorder that keeps it all
in memory (training without any store: a notebook, a unit test). The MLflow recorder lives in
`seismic_ml.tracking.training_run`, as Lightning keeps its loggers out of the loop."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import nn

from seismic_ml import interrupts
from seismic_ml.config import RunConfig
from seismic_ml.training.loop import Callback, Trainer


@dataclass
class TrainResult:
    """What a caller gets back: the run, its final and best metrics, and the trained model."""

    run_id: str
    metrics: dict[str, float]
    model: nn.Module
    model_uri: str | None
    history: list[dict[str, float]]


class Recording(Protocol):
    """One training's record while it trains (an MLflow run, or memory)."""

    run_id: str
    resume_from: dict[str, Any] | None  # the snapshot a resumed training continues from

    def fitting(self) -> AbstractContextManager[list[Callback]]:
        """The callbacks that record the loop; leaving the block flushes them, on errors too."""
        ...

    def finish(self, result: TrainResult, thresholds: dict[str, float]) -> TrainResult:
        """Record the results (final metrics, model); returns the result as the caller sees it."""
        ...


class Recorder(Protocol):
    """Where trainings are recorded: opens one record per training and closes it with a status."""

    def open(self, cfg: RunConfig, trainer: Trainer) -> AbstractContextManager[Recording]:
        """Start (or reopen) the record of cfg's training; leaving it ends it with its status."""
        ...


@dataclass
class _Metrics:
    """A loop callback keeping per-step and per-epoch metrics, as the MLflow logger sends them."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)

    def on_step(self, trainer: Trainer, lr: float, loss: float) -> None:
        """Keep the step's learning rate and loss."""
        self.steps.append({"step": trainer.state.step - 1, "lr": lr, "train/loss": loss})

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float], is_best: bool) -> None:
        """Keep the epoch's metrics."""
        self.epochs.append({"epoch": trainer.state.epoch, **metrics})


@dataclass
class MemoryRecorder:
    """Records trainings in memory: params, step and epoch metrics, results and status."""

    params: dict[str, str] = field(default_factory=dict)
    metrics: _Metrics = field(default_factory=_Metrics)
    results: dict[str, float] = field(default_factory=dict)
    status: str = ""
    result: TrainResult | None = None  # the last training's, model included

    @contextmanager
    def open(self, cfg: RunConfig, trainer: Trainer) -> Iterator[Recording]:
        """A record of this training; its status says how the block ended (as MLflow's does)."""
        self.params, self.metrics, self.results = cfg.to_params(), _Metrics(), {}
        with interrupts.status_of(self):
            yield _MemoryRecording(self, f"memory-{uuid.uuid4().hex}")


@dataclass
class _MemoryRecording:
    recorder: MemoryRecorder
    run_id: str
    resume_from: dict[str, Any] | None = None

    @contextmanager
    def fitting(self) -> Iterator[list[Callback]]:
        yield [self.recorder.metrics]

    def finish(self, result: TrainResult, thresholds: dict[str, float]) -> TrainResult:
        self.recorder.results = dict(result.metrics)
        self.recorder.result = result
        return result
