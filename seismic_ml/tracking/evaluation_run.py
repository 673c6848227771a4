"""An evaluation recorded in MLflow: `evaluate_run` resolves the training run (a run id or model
URI, read once), checks the request against it, loads the model, and hands `evaluate()` the
MLflow recorder: a run named after the training run, in its experiment unless another is asked
for, with params, the scored split as a dataset input, metrics, tables and figures. A registry
version evaluated on a whole split gets its headline metrics as tags."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from seismic_ml.evaluation.checks import check_overrides, check_task
from seismic_ml.evaluation.evaluate import EvalResult, EvalSettings, evaluate
from seismic_ml.evaluation.recorder import ScoredSplit
from seismic_ml.tracking import model_io
from seismic_ml.tracking.datasets import log_split
from seismic_ml.tracking.loader import load_source, resolve_pair
from seismic_ml.tracking.run import package_tags, tracked_run, under_mlflow_project


def evaluate_run(
    task: str,
    run_id: str | None = None,
    model_uri: str | None = None,
    experiment: str | None = None,
    overrides: dict[str, Any] | None = None,
    **settings: Any,
) -> EvalResult:
    """Score the model a run id or model URI names (settings: EvalSettings' fields) and record
    the evaluation as an MLflow run; the CLI's eval-phase and eval-mag."""
    source, model_uri = resolve_pair(run_id, model_uri)
    cfg = source.config  # the training run, read once: its params, name and experiment
    check_task(cfg, task, source.run_id)
    check_overrides(cfg, overrides or {}, source.run_id)
    trained = load_source(source, model_uri, cfg)
    result = evaluate(trained, EvalSettings(**settings), MlflowEvalRecorder(source.run, experiment))
    if result.version_tags:
        model_io.tag_version(source.name, source.version, result.version_tags)
    return result


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
    """Records evaluations of one training run as MLflow runs; experiment None: the training
    run's."""

    trained_run: Run
    experiment: str | None = None

    @contextlib.contextmanager
    def open(
        self, tags: dict[str, str], params: dict[str, str], data: ScoredSplit
    ) -> Iterator[MlflowEvalRecording]:
        """The evaluation's run, ended FINISHED, FAILED or KILLED with the block."""
        name = f"eval-{self.trained_run.info.run_name}"
        with tracked_run(name, self._experiment(), tags={**package_tags(), **tags}) as run:
            mlflow.log_params(params)
            log_split(data.metadata, data.dataset, data.path, data.split, "evaluation")
            yield MlflowEvalRecording(run.info.run_id)

    def _experiment(self) -> str | None:
        """The experiment asked for, else the training run's; under `mlflow run` (which chose
        the experiment) only the one asked for, so that a differing one alone is warned about."""
        if self.experiment or under_mlflow_project():
            return self.experiment
        return MlflowClient().get_experiment(self.trained_run.info.experiment_id).name
