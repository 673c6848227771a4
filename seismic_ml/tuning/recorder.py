"""What records a study: the protocol `tune()` is handed. A study is one parent record (the
worker that creates the study creates it; every worker reopens it, reports into it and closes
it) and one child record per trial, which a training recorder writes. The MLflow recorder
(parent run, nested child runs, the heartbeat) lives in `seismic_ml.tracking.study_runs`, as
the training's lives in `tracking.training_run`: tuning/ decides what happens and when."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from torch import nn

from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError
from seismic_ml.training.recorder import MemoryRecorder, Recorder

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


@dataclass
class MemoryRecord:
    """A parent or child record kept in memory."""

    status: str = "RUNNING"
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)  # path in the record -> local copy
    trainer: MemoryRecorder | None = None  # a trial's or retraining's training record


class _NoHeartbeat:
    def close(self, wait_s: float | None = None) -> None:
        pass


@dataclass
class MemoryStudyRecorder:
    """Records studies in memory (one process; no tracking store, no MLflow): a tuning run in a
    notebook or a test. Its files (report, search space) are copied into folder when given."""

    folder: Path | str | None = None
    records: dict[str, MemoryRecord] = field(default_factory=dict)
    trials: dict[tuple[str, int], str] = field(default_factory=dict)  # (parent, number) -> id

    def project_run(self) -> str | None:
        return None

    def where(self) -> str:
        return "memory"

    def create_parent(
        self,
        study_name: str,
        base: RunConfig,
        params: dict[str, str],
        experiment: str | None,
        project_run: str | None,
    ) -> str:
        return self._new(MemoryRecord(tags={"study": study_name}, params=dict(params)))

    def discard(self, run_id: str, project_run: str | None) -> None:
        self.records.pop(run_id, None)

    def check_parent(self, parent: str, study_name: str) -> None:
        if parent not in self.records:
            raise SeismicMLError(f"study {study_name!r} has its parent {parent} in another store")

    def reopen_parent(self, parent: str) -> str:
        self.records[parent].status = "RUNNING"
        return "memory"

    def mark_worker(self, project_run: str, parent: str) -> None:
        pass

    def log_search_space(self, parent: str, space: dict, path: str) -> None:
        self.records[parent].tags["search_space"] = repr(space)

    def heartbeat(self, parent: str) -> Heartbeat:
        return _NoHeartbeat()

    def stop_parent(self, parent: str, status: str, reason: str) -> None:
        self.close_parent(parent, status)
        self.records[parent].tags["reason"] = reason

    def close_parent(self, parent: str, status: str) -> None:
        self.records[parent].status = status

    def log_report(
        self,
        parent: str,
        metrics: dict[str, float],
        step: int,
        tags: dict[str, str],
        folder: Path,
        path: str,
    ) -> None:
        record = self.records[parent]
        record.metrics.update(metrics)
        record.tags.update(tags)
        if self.folder is not None:
            shutil.copytree(folder, Path(self.folder) / path, dirs_exist_ok=True)
            record.files = {p.name: p for p in (Path(self.folder) / path).iterdir()}

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        trainer = self._trainer(run_id)
        epochs = trainer.metrics.epochs if trainer is not None else []
        rows = [(e["epoch"], e[key]) for e in epochs if key in e]
        return pd.DataFrame(rows, columns=["step", "value"])

    def trial(self, parent: str, experiment: str, study_name: str, number: int) -> Recorder:
        record = MemoryRecord(tags={"parent": parent, "state": "RUNNING"})
        record.trainer = MemoryRecorder()
        self.trials[(parent, number)] = self._new(record)
        return record.trainer

    def find_trial(self, parent: str | None, number: int) -> ChildRun | None:
        run_id = self.trials.get((parent or "", number))
        if run_id is None:
            return None
        record = self.records[run_id]
        done = record.trainer.status == "FINISHED" and record.tags["state"] == "COMPLETE"
        value = record.trainer.results.get(OBJECTIVE_METRIC) if done else None
        return ChildRun(run_id, value, record.tags.get("reason"))

    def tag_trial(
        self,
        parent: str,
        number: int,
        state: str,
        *,
        reason: str | None = None,
        pruned_at: int | None = None,
    ) -> str | None:
        run_id = self.trials.get((parent, number))
        if run_id is not None:
            tags = {"state": state, "reason": reason, "pruned_at": pruned_at}
            self.records[run_id].tags.update({k: str(v) for k, v in tags.items() if v is not None})
        return run_id

    def close_failed_trial(self, parent: str | None, number: int, reason: str) -> None:
        self.tag_trial(parent or "", number, "FAIL", reason=reason)

    def retrain(
        self, experiment: str, run_name: str, register_as: str, tags: dict[str, str]
    ) -> Recorder:
        record = MemoryRecord(tags=dict(tags), trainer=MemoryRecorder())
        self._new(record)
        return record.trainer

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        if run_id in self.records:
            self.records[run_id].tags.update(tags)

    def load_module(self, run_id: str) -> nn.Module:
        trainer = self._trainer(run_id)
        if trainer is None or trainer.result is None:
            raise SeismicMLError(f"no trained model recorded as {run_id}")
        return trainer.result.model

    def _new(self, record: MemoryRecord) -> str:
        run_id = f"memory-{uuid.uuid4().hex}"
        self.records[run_id] = record
        return run_id

    def _trainer(self, run_id: str) -> Any:
        """The training record of a record id, or of the training that ran as run_id."""
        if run_id in self.records:
            return self.records[run_id].trainer
        for record in self.records.values():
            result = record.trainer.result if record.trainer is not None else None
            if result is not None and result.run_id == run_id:
                return record.trainer
        return None
