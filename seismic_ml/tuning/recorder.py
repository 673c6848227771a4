"""What records a study: the protocol `tune()` is handed. A study is one parent record (the
worker that creates the study creates it; every worker reopens it, reports into it and closes
it) and one child record per trial, which a training recorder writes. The MLflow recorder
(parent run, nested child runs, the heartbeat) lives in `seismic_ml.tracking.study_runs`, as
the training's lives in `tracking.training_run`: tuning/ decides what happens and when."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd
from torch import nn

from seismic_ml.config import RunConfig
from seismic_ml.training.recorder import Recorder

OBJECTIVE_METRIC = "best/val_loss"  # a trial's objective: its training's best validation loss


@dataclass(frozen=True)
class ChildRun:
    """A trial's child record as the tuning logic needs it."""

    run_id: str
    finished_value: float | None  # the objective, when its training finished (else None)
    reason: str | None  # why it failed, as its worker recorded on the way out


class Heartbeat(Protocol):
    """A worker's liveness signal in the parent record while it runs trials."""

    def close(self, wait_s: float | None = None) -> None:
        """Stop beating; wait at most wait_s for what is still queued (None: the default)."""
        ...


class StudyRecorder(Protocol):
    """Where studies are recorded: the parent record, each trial's child, the report."""

    def project_run(self) -> str | None:
        """The record a launcher handed this worker (`mlflow run`'s), taken once; else None."""
        ...

    def where(self) -> str:
        """The store, without its password, for attributes anyone may read."""
        ...

    def create_parent(
        self,
        study_name: str,
        base: RunConfig,
        params: dict[str, str],
        experiment: str | None,
        project_run: str | None,
    ) -> str:
        """The study's parent record (the project run, if any), with its settings; its id."""
        ...

    def discard(self, run_id: str, project_run: str | None) -> None:
        """Drop a parent candidate that lost the race to create the study."""
        ...

    def check_parent(self, parent: str, study_name: str) -> None:
        """Refuse (one line) a parent this store does not have, or a deleted one."""
        ...

    def reopen_parent(self, parent: str) -> str:
        """Mark the parent running again; the experiment its trials go into."""
        ...

    def mark_worker(self, project_run: str, parent: str) -> None:
        """Point a worker's project run at the study's parent."""
        ...

    def log_search_space(self, parent: str, space: dict, path: str) -> None:
        """The search space, as a file of the parent."""
        ...

    def heartbeat(self, parent: str) -> Heartbeat:
        """Start this worker's heartbeat in the parent."""
        ...

    def stop_parent(self, parent: str, status: str, reason: str) -> None:
        """End the parent with the reason this worker stopped (never raises)."""
        ...

    def close_parent(self, parent: str, status: str) -> None:
        """End the parent with status."""
        ...

    def log_report(
        self,
        parent: str,
        metrics: dict[str, float],
        step: int,
        tags: dict[str, str],
        folder: Path,
        path: str,
    ) -> None:
        """The study's counts and best trial (metrics at step, tags) and its files."""
        ...

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """A record's metric as step and value columns (empty when it has none)."""
        ...

    def trial(self, parent: str, experiment: str, study_name: str, number: int) -> Recorder:
        """The training recorder of one trial: a child of the parent."""
        ...

    def find_trial(self, parent: str | None, number: int) -> ChildRun | None:
        """A trial's child record; None without one or when the store fails (warned)."""
        ...

    def tag_trial(
        self,
        parent: str,
        number: int,
        state: str,
        *,
        reason: str | None = None,
        pruned_at: int | None = None,
    ) -> str | None:
        """Tag a trial's child with the trial's state (and why it failed, or the epoch it was
        pruned at); its id (None: it has none, or the store failed)."""
        ...

    def close_failed_trial(self, parent: str | None, number: int, reason: str) -> None:
        """End a failed trial's child as failed, with the reason (never raises)."""
        ...

    def retrain(
        self, experiment: str, run_name: str, register_as: str, tags: dict[str, str]
    ) -> Recorder:
        """The training recorder of the best trial's retraining: an ordinary record."""
        ...

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on a record."""
        ...

    def load_module(self, run_id: str) -> nn.Module:
        """The model a record holds, read back as any reader of the store would."""
        ...
