"""What records an evaluation: the protocol `evaluate()` is handed, and a recorder that keeps it
in memory (scoring without any store: a notebook, a unit test). The MLflow recorder lives in
`seismic_ml.tracking.evaluation_run`, as the training's does in `tracking.training_run`."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

from seismic_ml import interrupts


@dataclass(frozen=True)
class ScoredSplit:
    """The split an evaluation scored (a dataset input of its run, where runs have inputs)."""

    metadata: pd.DataFrame
    dataset: str
    path: str
    split: str


class EvalRecording(Protocol):
    """One evaluation's record while it scores."""

    run_id: str

    def log_scores(self, metrics: dict[str, float], folder: Path) -> None:
        """The metrics, and every file in folder (tables, metrics.json, plots/)."""
        ...


class EvalRecorder(Protocol):
    """Where evaluations are recorded: one record per evaluation, closed with its status."""

    def open(
        self, tags: dict[str, str], params: dict[str, str], data: ScoredSplit
    ) -> AbstractContextManager[EvalRecording]:
        """Start the record of one evaluation; leaving the block ends it with its status."""
        ...


@dataclass
class MemoryEvalRecorder:
    """Keeps an evaluation's tags, params, metrics and status in memory; its files too when
    given a folder to copy them into (they are written to a temporary one)."""

    folder: Path | str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = ""

    @contextmanager
    def open(
        self, tags: dict[str, str], params: dict[str, str], data: ScoredSplit
    ) -> Iterator[EvalRecording]:
        """A record of this evaluation; its status says how the block ended (as MLflow's)."""
        self.tags, self.params, self.metrics = dict(tags), dict(params), {}
        with interrupts.status_of(self):
            yield _MemoryEvalRecording(self, f"memory-{uuid.uuid4().hex}")


@dataclass
class _MemoryEvalRecording:
    recorder: MemoryEvalRecorder
    run_id: str

    def log_scores(self, metrics: dict[str, float], folder: Path) -> None:
        self.recorder.metrics = dict(metrics)
        if self.recorder.folder is not None:
            shutil.copytree(folder, self.recorder.folder, dirs_exist_ok=True)
