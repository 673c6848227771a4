"""One Optuna trial as a child record of the study's parent: sample, train, report, tag."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from seismic_ml.config import RunConfig
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.training.loop import Trainer
from seismic_ml.training.train import train
from seismic_ml.tuning.recorder import OBJECTIVE_METRIC, ChildRun, StudyRecorder
from seismic_ml.tuning.space import SearchSpace, apply_params
from seismic_ml.tuning.storage import StorageOutage
from seismic_ml.tuning.tune_config import TuneOptions
from seismic_ml.workers import WORKER_ATTR, describe, is_gone, this_worker

PARENT_ATTR = "mlflow_parent_run_id"
RUN_ID_ATTR = "mlflow_run_id"
FAIL_REASON_ATTR = "fail_reason"
SEED_ATTR = "sampler_seed"  # the TPE seed of the worker that sampled the trial
RECORDED_FROM_ATTR = "recorded_from_trial"  # a COMPLETE copy of a heartbeat-failed trial

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
        recorder: StudyRecorder,
        sampler_seed: int | None = None,
    ) -> None:
        self.options, self.space, self.base = options, space, base
        self.parent, self.experiment, self.recorder = parent, experiment, recorder
        self.sampler_seed = sampler_seed

    def __call__(self, trial: optuna.Trial) -> float:
        """Train the sampled config; the objective is its best validation loss."""
        trial.set_user_attr(WORKER_ATTR, this_worker())  # lets a restarted worker fail it
        if self.sampler_seed is not None:
            trial.set_user_attr(SEED_ATTR, self.sampler_seed)
        values = self.space.suggest(trial)
        cfg = apply_params(self.base, values, epochs=self.options.max_epochs_per_trial)
        pruning = PruningCallback(trial)
        try:
            where = (self.parent, self.experiment, self.options.name, trial.number)
            result = train(cfg, self.recorder.trial(*where), callbacks=[pruning])
        except optuna.TrialPruned:
            self._close(trial, "PRUNED", pruned_at=pruning.pruned_at)
            raise
        except StorageOutage as exc:  # the trial stays RUNNING: only its run says why
            self.recorder.tag_trial(self.parent, trial.number, "FAIL", reason=first_line(exc))
            raise
        except BaseException as exc:
            trial.set_user_attr(FAIL_REASON_ATTR, first_line(exc))
            self._close(trial, "FAIL")  # tracked_run set FAILED (KILLED on a signal)
            raise
        self._close(trial, "COMPLETE")  # the run first: the value survives a storage outage
        return result.metrics[OBJECTIVE_METRIC]

    def _close(self, trial: optuna.Trial, state: str, pruned_at: int | None = None) -> None:
        """Tag the child run with how the trial ended, then record the run in the trial."""
        run_id = self.recorder.tag_trial(self.parent, trial.number, state, pruned_at=pruned_at)
        if run_id is not None:  # None: failed before the run started (e.g. an invalid config)
            trial.set_user_attr(RUN_ID_ATTR, run_id)


def _trial_run(study: optuna.Study, number: int, recorder: StudyRecorder) -> ChildRun | None:
    """The trial's child run; None without one or when the tracking server fails (warned)."""
    return recorder.find_trial(study.user_attrs.get(PARENT_ATTR), number)


def stale_trial_callback(recorder: StudyRecorder) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Optuna's heartbeat callback for trials of workers gone silent, recorded by recorder."""
    return functools.partial(fail_stale_child, recorder=recorder)


def fail_stale_child(study: optuna.Study, trial: FrozenTrial, recorder: StudyRecorder) -> None:
    """Heartbeat callback: a dead worker's trial became FAIL; close its child run FAILED too.

    A trial whose training had finished (its worker lost the storage before telling it) is
    added again, COMPLETE with the value its run logged: Optuna never reopens a FAIL trial.
    """
    run = _trial_run(study, trial.number, recorder)
    if run is not None and run.finished_value is not None:
        _add_complete_copy(study, trial, run.run_id, run.finished_value)
        return
    worker = describe(trial.user_attrs.get(WORKER_ATTR))
    reason = (
        f"worker {worker} sent no heartbeat within the grace period "
        f"(found by worker {describe(this_worker())})"
    )
    recorder.close_failed_trial(study.user_attrs.get(PARENT_ATTR), trial.number, reason)


def _add_complete_copy(study: optuna.Study, trial: FrozenTrial, run_id: str, value: float) -> None:
    """A COMPLETE trial with the failed one's params, steps and the value its run logged."""
    attrs = {**trial.user_attrs, RUN_ID_ATTR: run_id, RECORDED_FROM_ATTR: trial.number}
    copy = optuna.trial.create_trial(
        params=trial.params,
        distributions=trial.distributions,
        value=value,
        intermediate_values=trial.intermediate_values,
        user_attrs=attrs,
    )
    study.add_trial(copy)
    log.warning(
        "trial %d: its worker finished training but never recorded it: added COMPLETE again "
        "with val/loss %.4g from run %s",
        trial.number,
        value,
        run_id,
    )


def fail_gone_trials(study: optuna.Study, recorder: StudyRecorder) -> list[int]:
    """Close the RUNNING trials of gone workers on this host: COMPLETE when their run finished
    training (the value it logged), else FAIL with their child runs."""
    closed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_gone(trial.user_attrs.get(WORKER_ATTR)):
            continue
        run = _trial_run(study, trial.number, recorder)
        if _complete_from_run(study, trial, run) or _fail_gone(study, trial, run, recorder):
            closed.append(trial.number)
    return closed


def _complete_from_run(study: optuna.Study, trial: FrozenTrial, run: ChildRun | None) -> bool:
    """Record the value of a trial whose run finished training; False when it had not."""
    if run is None or run.finished_value is None:
        return False
    value = run.finished_value
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, RUN_ID_ATTR, run.run_id)
        if not storage.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [value]):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    worker = describe(trial.user_attrs.get(WORKER_ATTR))
    log.warning(
        "trial %d: worker %s finished training but never recorded it: COMPLETE, "
        "val/loss %.4g from run %s",
        trial.number,
        worker,
        value,
        run.run_id,
    )
    return True


def _fail_gone(
    study: optuna.Study, trial: FrozenTrial, run: ChildRun | None, recorder: StudyRecorder
) -> bool:
    """Fail a gone worker's trial; the reason its run recorded on the way out, if any."""
    me = describe(this_worker())
    reason = f"worker {describe(trial.user_attrs.get(WORKER_ATTR))} is gone (found by worker {me})"
    own = run.reason if run is not None else None
    if own:  # e.g. the storage outage that stopped it
        reason = f"{own} (recorded by worker {me})"
    if not _fail_trial(study, trial, reason):
        return False
    log.warning("trial %d failed: %s", trial.number, reason)
    recorder.close_failed_trial(study.user_attrs.get(PARENT_ATTR), trial.number, reason)
    return True


def _fail_trial(study: optuna.Study, trial: FrozenTrial, reason: str) -> bool:
    """Mark the trial FAIL with its reason; False when another worker finished it first."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
        return storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
