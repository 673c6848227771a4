"""The MLflow recorder of an evaluation: its run (named after the training run, in the training
run's experiment unless another is asked for), params, the scored split as a dataset input,
metrics, tables and figures. `evaluation.evaluate` hands it what to record and never talks to
MLflow itself."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from seismic_ml.tracking.datasets import log_split
from seismic_ml.tracking.run import tracked_run, under_mlflow_project


@dataclass(frozen=True)
class ScoredSplit:
    """The split an evaluation scored, as a dataset input of its run."""

    metadata: pd.DataFrame
    dataset: str
    path: str
    split: str


class MlflowEvalRecording:
    """One evaluation's MLflow run while it scores."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def log_scores(self, metrics: dict[str, float], folder: Path) -> None:
        """The metrics, and every file in folder (tables, metrics.json, plots/) as artifacts."""
        mlflow.log_metrics(metrics)
        mlflow.log_artifacts(str(folder))


@dataclass
class MlflowEvalRecorder:
    """Records each evaluation as an MLflow run; experiment None: the training run's."""

    experiment: str | None = None

    @contextlib.contextmanager
    def open(
        self, trained_run: Run, tags: dict[str, str], params: dict[str, str], data: ScoredSplit
    ) -> Iterator[MlflowEvalRecording]:
        """The evaluation's run, ended FINISHED, FAILED or KILLED with the block."""
        name = f"eval-{trained_run.info.run_name}"
        with tracked_run(name, self._experiment(trained_run), tags=tags) as run:
            mlflow.log_params(params)
            log_split(data.metadata, data.dataset, data.path, data.split, "evaluation")
            yield MlflowEvalRecording(run.info.run_id)

    def _experiment(self, trained_run: Run) -> str | None:
        """The experiment asked for, else the training run's; under `mlflow run` (which chose
        the experiment) only the one asked for, so that a differing one alone is warned about."""
        if self.experiment or under_mlflow_project():
            return self.experiment
        return MlflowClient().get_experiment(trained_run.info.experiment_id).name
