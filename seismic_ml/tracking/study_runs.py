"""The MLflow side of an Optuna study: its parent run (created, reopened, closed, reported
into), the project run a worker was handed, and each trial's child run (found, tagged,
closed). `MlflowStudyRecorder` hands them to `tune()` (the StudyRecorder protocol of
tuning/recorder.py): tuning/ decides what happens and when; this is where it is written."""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.tracking import history, local
from seismic_ml.tracking.loader import load_model
from seismic_ml.tracking.lost_runs import REASON_TAG
from seismic_ml.tracking.run import DEFAULT_EXPERIMENT, standard_tags
from seismic_ml.tracking.sender import MetricSender
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.tuning.recorder import OBJECTIVE_METRIC, ChildRun

PARENT_TAG = "mlflow.parentRunId"
STATE_TAG = "optuna.trial_state"
NUMBER_TAG = "optuna.trial_number"
STUDY_TAG = "optuna.study_name"
ROLE_TAG = "seismic_ml.role"
PARENT_ID_TAG = "seismic_ml.tune_parent_run_id"

log = logging.getLogger(__name__)


class MlflowStudyRecorder:
    """Records a study in MLflow: a parent run, a nested child run per trial, a heartbeat."""

    def project_run(self) -> str | None:
        """The run `mlflow run` handed this worker (MLFLOW_RUN_ID), taken out of the
        environment so that no trial's run reuses it."""
        return os.environ.pop("MLFLOW_RUN_ID", None)

    def where(self) -> str:
        """The tracking URI without its password."""
        return public_tracking_uri()

    def create_parent(
        self,
        study_name: str,
        base: RunConfig,
        params: dict[str, str],
        experiment: str | None,
        project_run: str | None,
    ) -> str:
        """The parent run: the study's tags, params and base config."""
        tags = {
            **standard_tags(base.task, base.model_type, base.data.dataset),
            ROLE_TAG: "optuna_study",
            STUDY_TAG: study_name,
            "mlflow.runName": study_name,
        }
        return create_parent_run(tags, params, base.to_params(), experiment, project_run)

    def discard(self, run_id: str, project_run: str | None) -> None:
        """Delete a parent candidate that lost the race (never the project run)."""
        discard_run(run_id, project_run)

    def check_parent(self, parent: str, study_name: str) -> None:
        """The parent run is on this tracking server and not deleted."""
        check_parent(parent, study_name)

    def reopen_parent(self, parent: str) -> str:
        """Mark the parent RUNNING; its experiment's name."""
        return reopen_parent(parent)

    def mark_worker(self, project_run: str, parent: str) -> None:
        """Tag a worker's `mlflow run` run as a worker of the study's parent."""
        tag_run(project_run, {ROLE_TAG: "optuna_worker", PARENT_ID_TAG: parent})

    def log_search_space(self, parent: str, space: dict, path: str) -> None:
        """The search space as a JSON artifact of the parent run."""
        log_search_space(parent, space, path)

    def heartbeat(self, parent: str) -> MetricSender:
        """This worker's heartbeat tag in the parent run, spooled beside its other records."""
        return MetricSender(parent, local.run_dir(parent) / f"worker-{os.getpid()}").start()

    def stop_parent(self, parent: str, status: str, reason: str) -> None:
        """End the parent run with the reason this worker stopped."""
        stop_parent(parent, status, reason)

    def close_parent(self, parent: str, status: str) -> None:
        """End the parent run."""
        close_parent(parent, status)

    def log_report(
        self,
        parent: str,
        metrics: dict[str, float],
        step: int,
        tags: dict[str, str],
        folder: Path,
        path: str,
    ) -> None:
        """The study's report into the parent run."""
        log_report(parent, metrics, step, tags, folder, path)

    def metric_history(self, run_id: str, key: str) -> pd.DataFrame:
        """A run's metric history (step, value)."""
        return history.metric_history(run_id, key)

    def trial(self, parent: str, experiment: str, study_name: str, number: int) -> MlflowRecorder:
        """A child of the parent run (explicit tag: the parent is not this process's run)."""
        tags = {
            PARENT_TAG: parent,
            ROLE_TAG: "optuna_trial",
            NUMBER_TAG: str(number),
            STUDY_TAG: study_name,
            STATE_TAG: "RUNNING",
        }
        return MlflowRecorder(
            experiment=experiment,
            run_name=f"{study_name}-trial-{number}",
            log_model=False,
            tags=tags,
            killed_on=(optuna.TrialPruned,),
        )

    def find_trial(self, parent: str | None, number: int) -> ChildRun | None:
        """A trial's child run, or None (warned when the server fails)."""
        return child_or_none(parent, number)

    def tag_trial(
        self,
        parent: str,
        number: int,
        state: str,
        *,
        reason: str | None = None,
        pruned_at: int | None = None,
    ) -> str | None:
        """Tag a trial's child run with the trial's state (optuna.trial_state); its id."""
        tags = {} if reason is None else {REASON_TAG: reason}
        if pruned_at is not None:
            tags["optuna.pruned_at_epoch"] = str(pruned_at)
        return tag_child(parent, number, state, tags)

    def close_failed_trial(self, parent: str | None, number: int, reason: str) -> None:
        """End a failed trial's child run FAILED, with the reason."""
        close_failed_child(parent, number, reason)

    def retrain(
        self, experiment: str, run_name: str, register_as: str, tags: dict[str, str]
    ) -> MlflowRecorder:
        """An ordinary (non-nested) run for the best trial's retraining."""
        return MlflowRecorder(
            experiment=experiment, run_name=run_name, register_as=register_as, tags=tags
        )

    def tag_run(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on a run."""
        tag_run(run_id, tags)

    def load_module(self, run_id: str) -> torch.nn.Module:
        """The run's logged model, rebuilt from its files."""
        return load_model(run_id).module


# ---------------------------------------------------------------- the parent run


def create_parent_run(
    tags: dict[str, str],
    params: dict[str, str],
    base_config: dict[str, str],
    experiment: str | None,
    project_run: str | None,
) -> str:
    """A run for the whole study (the `mlflow run` run, if there is one) with its settings."""
    client = MlflowClient()
    if project_run:
        run_id = project_run
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    else:
        experiment_id = experiment_id_for(experiment)
        run_id = client.create_run(experiment_id, tags=resolve_tags(tags)).info.run_id
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    client.log_dict(run_id, base_config, "config/base_config.json")
    return run_id


def experiment_id_for(name: str | None) -> str:
    """The experiment's id (created if needed); without a name, the environment's or default."""
    if name is None and os.environ.get("MLFLOW_EXPERIMENT_ID"):
        return os.environ["MLFLOW_EXPERIMENT_ID"]
    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:  # created by another worker meanwhile
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def discard_run(run_id: str, project_run: str | None) -> None:
    """Delete a parent candidate that lost the race (never the run `mlflow run` created)."""
    if run_id != project_run:
        client = MlflowClient()
        client.set_terminated(run_id, "KILLED")
        client.delete_run(run_id)


def check_parent(parent: str, study_name: str) -> None:
    """The parent run is on this tracking server and not deleted; else one line."""
    try:
        run = MlflowClient().get_run(parent)
    except MlflowException as exc:
        raise SeismicMLError(
            f"study {study_name!r} nests its trials under MLflow run {parent}, which "
            f"{mlflow.get_tracking_uri()} does not have: point every worker at the same "
            f"tracking server ({first_line(exc)})"
        ) from exc
    if run.info.lifecycle_stage == "deleted":
        raise SeismicMLError(f"the parent run {parent} of study {study_name!r} was deleted")


def tag_run(run_id: str, tags: dict[str, str]) -> None:
    """Set tags on a run (not this process's active one)."""
    MlflowClient().log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def reopen_parent(parent: str) -> str:
    """Mark the parent RUNNING (no stopped worker's reason); its experiment's name."""
    client = MlflowClient()
    client.update_run(parent, status="RUNNING")
    experiment_id = _drop_reason(client, parent)
    return client.get_experiment(experiment_id).name


def _drop_reason(client: MlflowClient, parent: str) -> str:
    """Remove the reason a stopped worker gave the parent run; the run's experiment id."""
    run = client.get_run(parent)
    if REASON_TAG in run.data.tags:
        client.delete_tag(parent, REASON_TAG)
    return run.info.experiment_id


def close_parent(parent: str, status: str) -> None:
    """End the parent run (FINISHED drops a stopped worker's reason first)."""
    client = MlflowClient()
    if status == "FINISHED":
        _drop_reason(client, parent)
    client.set_terminated(parent, status)


def stop_parent(parent: str, status: str, reason: str) -> None:
    """End the parent run with the reason this worker stopped (warned when it cannot)."""
    try:
        client = MlflowClient()
        client.set_tag(parent, REASON_TAG, reason)
        client.set_terminated(parent, status)
    except MlflowException as exc:
        log.warning("could not close the study's parent run %s: %s", parent, first_line(exc))


def log_search_space(parent: str, space: dict, path: str) -> None:
    """The search space as a JSON artifact of the parent run."""
    MlflowClient().log_dict(parent, space, path)


def log_report(
    parent: str, metrics: dict[str, float], step: int, tags: dict[str, str], folder: Path, path: str
) -> None:
    """The study's counts and best trial (metrics at step, tags) and its files, into the parent."""
    client = MlflowClient()
    now = int(time.time() * 1000)
    client.log_batch(
        parent,
        metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.log_artifacts(parent, str(folder), path)


def public_tracking_uri() -> str:
    """The tracking URI without its password, for attributes anyone may read."""
    return public_uri(mlflow.get_tracking_uri())


def public_uri(uri: str) -> str:
    """A URI without its password (user:***@host)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.password:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# ---------------------------------------------------------------- a trial's child run


def find_child(parent: str, number: int) -> ChildRun | None:
    """A trial's child run, found by its parent and trial number tags; None without one."""
    client = MlflowClient()
    experiment_id = client.get_run(parent).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent}' AND tags.`{NUMBER_TAG}` = '{number}'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1)
    if not runs:
        return None
    run = runs[0]
    done = run.info.status == "FINISHED" and run.data.tags.get(STATE_TAG) == "COMPLETE"
    value = run.data.metrics.get(OBJECTIVE_METRIC) if done else None
    return ChildRun(run.info.run_id, value, run.data.tags.get(REASON_TAG))


def child_or_none(parent: str | None, number: int) -> ChildRun | None:
    """find_child; None without a parent or when the tracking server fails (warned)."""
    try:
        return find_child(parent, number) if parent else None
    except MlflowException as exc:
        log.warning("could not read the run of trial %d: %s", number, first_line(exc))
        return None


def tag_child(parent: str, number: int, state: str, tags: dict[str, str] | None) -> str | None:
    """Tag a trial's child run with the trial's state (tracked_run has set its status); its
    id, None without one or when the server fails (warned)."""
    run_id = None
    try:
        found = find_child(parent, number)
        if found is not None:
            run_id = found.run_id
            tag_run(run_id, {STATE_TAG: state, **(tags or {})})
    except MlflowException as exc:
        log.warning("could not tag the run of trial %d: %s", number, first_line(exc))
    return run_id


def close_failed_child(parent: str | None, number: int, reason: str) -> None:
    """End a failed trial's child run FAILED, tagged FAIL with the reason."""
    try:
        found = find_child(parent, number) if parent else None
        if found is None:
            return
        tag_run(found.run_id, {STATE_TAG: "FAIL", REASON_TAG: reason})
        client = MlflowClient()
        if client.get_run(found.run_id).info.status == "RUNNING":
            client.set_terminated(found.run_id, "FAILED")
    except MlflowException as exc:
        log.warning("could not close the run of failed trial %d: %s", number, first_line(exc))
