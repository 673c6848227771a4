"""One Optuna trial as a child MLflow run of the study's parent: sample, train, report, tag."""

from __future__ import annotations

import logging

import optuna
import torch
from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import FrozenTrial, TrialState

from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.training.loop import Trainer
from seismic_ml.training.train import TrackingOptions, train
from seismic_ml.tuning.options import TuneOptions
from seismic_ml.tuning.space import SearchSpace, apply_params
from seismic_ml.workers import WORKER_ATTR, describe, is_gone, this_worker

PARENT_ATTR = "mlflow_parent_run_id"
RUN_ID_ATTR = "mlflow_run_id"
FAIL_REASON_ATTR = "fail_reason"
PARENT_TAG = "mlflow.parentRunId"
STATE_TAG = "optuna.trial_state"
NUMBER_TAG = "optuna.trial_number"
STUDY_TAG = "optuna.study_name"
ROLE_TAG = "seismic_ml.role"
REASON_TAG = "seismic_ml.failed_reason"

# A trial failing with these is recorded FAIL and the study goes on; anything else stops it.
TRIAL_ERRORS = (SeismicMLError, torch.OutOfMemoryError)


log = logging.getLogger(__name__)


class PruningCallback:
    """Reports each epoch's val/loss to the trial; raises TrialPruned when Optuna says so."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.pruned_at: int | None = None

    def on_step(self, trainer: Trainer, lr: float, loss: float) -> None:
        """Nothing per step."""

    def on_epoch_end(self, trainer: Trainer, metrics: dict[str, float], is_best: bool) -> None:
        """Report the epoch; prune after the loggers have recorded it."""
        epoch = trainer.state.epoch
        self.trial.report(metrics["val/loss"], epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: val/loss {metrics['val/loss']:.4g}")


class Objective:
    """One trial: sample, train a nested child run of the parent, tag how the trial ended."""

    def __init__(
        self,
        options: TuneOptions,
        space: SearchSpace,
        base: RunConfig,
        parent: str,
        experiment: str,
    ) -> None:
        self.options, self.space, self.base = options, space, base
        self.parent, self.experiment = parent, experiment
        self.client = MlflowClient()

    def __call__(self, trial: optuna.Trial) -> float:
        """Train the sampled config; the objective is its best validation loss."""
        trial.set_user_attr(WORKER_ATTR, this_worker())  # lets a restarted worker fail it
        values = self.space.suggest(trial)
        cfg = apply_params(self.base, values, epochs=self.options.max_epochs_per_trial)
        pruning = PruningCallback(trial)
        try:
            result = train(cfg, self._tracking(trial), callbacks=[pruning])
        except optuna.TrialPruned:
            pruned_at = {"optuna.pruned_at_epoch": str(pruning.pruned_at)}
            self._close(trial, "PRUNED", pruned_at)
            raise
        except BaseException as exc:
            trial.set_user_attr(FAIL_REASON_ATTR, first_line(exc))
            self._close(trial, "FAIL")  # tracked_run set FAILED (KILLED on a signal)
            raise
        self._close(trial, "COMPLETE")
        return result.metrics["best/val_loss"]

    def _tracking(self, trial: optuna.Trial) -> TrackingOptions:
        """A child of the parent run (explicit tag: the parent is not this process's run)."""
        tags = {
            PARENT_TAG: self.parent,
            ROLE_TAG: "optuna_trial",
            NUMBER_TAG: str(trial.number),
            STUDY_TAG: self.options.name,
            STATE_TAG: "RUNNING",
        }
        return TrackingOptions(
            experiment=self.experiment,
            run_name=f"{self.options.name}-trial-{trial.number}",
            log_model=False,
            tags=tags,
            killed_on=(optuna.TrialPruned,),
        )

    def _close(
        self,
        trial: optuna.Trial,
        state: str,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Tag the child run with how the trial ended (tracked_run has set its status)."""
        try:
            run_id = find_child_run(self.parent, trial.number)
            if run_id is None:  # failed before the run started (e.g. an invalid config)
                return
            trial.set_user_attr(RUN_ID_ATTR, run_id)
            all_tags = {STATE_TAG: state, **(tags or {})}
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
        except MlflowException as exc:
            log.warning("could not tag the run of trial %d: %s", trial.number, first_line(exc))


def find_child_run(parent: str, number: int) -> str | None:
    """The child run of a trial, found by its parent and trial number tags."""
    client = MlflowClient()
    experiment_id = client.get_run(parent).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent}' AND tags.`{NUMBER_TAG}` = '{number}'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def fail_stale_child(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: a dead worker's trial became FAIL; close its child run FAILED too."""
    worker = describe(trial.user_attrs.get(WORKER_ATTR))
    reason = (
        f"worker {worker} sent no heartbeat within the grace period "
        f"(found by worker {describe(this_worker())})"
    )
    close_failed_child(study, trial.number, reason)


def fail_gone_trials(study: optuna.Study) -> list[int]:
    """Fail the RUNNING trials of gone workers on this host, and their child runs."""
    me = describe(this_worker())
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if not is_gone(worker):
            continue
        reason = f"worker {describe(worker)} is gone (found by worker {me})"
        if _fail_trial(study, trial, reason):
            log.warning("trial %d failed: %s", trial.number, reason)
            close_failed_child(study, trial.number, reason)
            failed.append(trial.number)
    return failed


def _fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Mark the trial FAIL with its reason; False when another worker finished it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
        return storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def close_failed_child(study: optuna.Study, number: int, reason: str) -> None:
    """End a failed trial's child run FAILED, tagged FAIL with the reason."""
    parent = study.user_attrs.get(PARENT_ATTR)
    try:
        run_id = find_child_run(parent, number) if parent else None
        if run_id is None:
            return
        client = MlflowClient()
        tags = [RunTag(STATE_TAG, "FAIL"), RunTag(REASON_TAG, reason)]
        client.log_batch(run_id, tags=tags)
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FAILED")
    except MlflowException as exc:
        log.warning("could not close the run of failed trial %d: %s", number, first_line(exc))
