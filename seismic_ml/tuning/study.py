"""tune(options): an Optuna study as an MLflow parent run, every trial a nested train() run.

Storage is Optuna's RDB storage (SQLite by default, PostgreSQL for several workers). The worker
that creates the study creates the parent run and keeps its id in the study's user attributes;
every other worker (and every resume) nests its trials under that run.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import optuna
import sqlalchemy
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from optuna.trial import FrozenTrial, TrialState

from seismic_ml.config import RunConfig, with_model_defaults
from seismic_ml.errors import SeismicMLError
from seismic_ml.tracking.run import DEFAULT_EXPERIMENT, sigterm_raises, standard_tags
from seismic_ml.training.loop import Trainer
from seismic_ml.training.train import TrackingOptions, TrainResult, train
from seismic_ml.tuning.space import SearchSpace, apply_params, build_search_space

DEFAULT_STORAGE = "sqlite:///optuna.db"
PARENT_ATTR = "mlflow_parent_run_id"
MODEL_TYPE_ATTR = "model_type"
RUN_ID_ATTR = "mlflow_run_id"
FAIL_REASON_ATTR = "fail_reason"
PARENT_TAG = "mlflow.parentRunId"
STATE_TAG = "optuna.trial_state"
NUMBER_TAG = "optuna.trial_number"
STUDY_TAG = "optuna.study_name"
ROLE_TAG = "seismic_ml.role"
ARTIFACT_DIR = "tuning"
# A joining worker waits this long for the creator of a new study to store the parent run id.
PARENT_WAIT_S = 30.0
HEARTBEAT_S = 60
# A trial failing with these is recorded FAIL and the study goes on; anything else stops it.
TRIAL_ERRORS = (SeismicMLError, torch.OutOfMemoryError)

log = logging.getLogger(__name__)


@dataclass
class TuneOptions:
    """What to tune (the base config and its search space), how long, and where it is stored."""

    base: RunConfig
    n_trials: int | None = 20
    max_epochs_per_trial: int = 10
    study_name: str | None = None
    storage: str = DEFAULT_STORAGE
    timeout: float | None = None
    search_space_file: str | None = None
    fixed_params: tuple[str, ...] = ()
    pruner_startup_trials: int = 5
    pruner_warmup_steps: int = 5
    experiment: str | None = None
    retrain_best: bool = False
    register_as: str = ""

    @property
    def name(self) -> str:
        """The study name; by default one study per model type."""
        return self.study_name or f"tune-{self.base.model_type}"


@dataclass
class TuneResult:
    """The study's state after this worker: counts, the best trial and its runs."""

    study_name: str
    parent_run_id: str
    counts: dict[str, int]
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_trial_number: int | None = None
    best_run_id: str | None = None
    retrain: TrainResult | None = None


def tune(options: TuneOptions) -> TuneResult:
    """Run this worker's trials of the study (creating or resuming it) and log the results."""
    space, base = _prepare(options)
    storage = make_storage(options.storage)
    study, parent = open_study(options, storage)
    client = MlflowClient()
    client.update_run(parent, status="RUNNING")
    _log_search_space(client, parent, space)
    experiment = client.get_experiment(client.get_run(parent).info.experiment_id).name
    objective = Objective(options, space, base, parent, experiment)
    try:
        with sigterm_raises():  # SIGTERM between trials also closes the parent
            study.optimize(
                objective, n_trials=options.n_trials, timeout=options.timeout, catch=TRIAL_ERRORS
            )
    except KeyboardInterrupt:
        _finish_quietly(study, parent, "KILLED")
        raise
    except BaseException:
        _finish_quietly(study, parent, "FAILED")
        raise
    finish_parent(study, parent, "FINISHED")
    result = summarize(study, parent)
    if options.retrain_best:
        result.retrain = retrain_best(options, base, study, parent, experiment)
    return result


def _prepare(options: TuneOptions) -> tuple[SearchSpace, RunConfig]:
    """Validate everything a user can get wrong before any study or run exists."""
    if options.n_trials is not None and options.n_trials < 0:
        raise SeismicMLError(f"n_trials must be >= 0, got {options.n_trials}")
    if options.max_epochs_per_trial <= 0:
        raise SeismicMLError(
            f"max_epochs_per_trial must be positive, got {options.max_epochs_per_trial}"
        )
    if options.pruner_startup_trials < 0 or options.pruner_warmup_steps < 0:
        raise SeismicMLError("pruner startup trials and warmup steps must be >= 0")
    if options.register_as and not options.retrain_best:
        raise SeismicMLError("--register-as registers the retrained model: add --retrain-best")
    space = build_search_space(
        options.base.model_type, options.search_space_file, options.fixed_params
    )
    base = with_model_defaults(options.base)
    base.validate()
    return space, base


def make_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna RDB storage with heartbeats; retries the schema creation racing another worker."""
    for attempt in range(5):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=HEARTBEAT_S,
                    heartbeat_stale_trial_callback=_fail_stale_child,
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise SeismicMLError(
                f"cannot open Optuna storage {redact(url)}: {_first_line(exc)}"
            ) from exc
    raise AssertionError("unreachable")


def redact(url: str) -> str:
    """The storage URL without its password, for logs and params."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_study(
    options: TuneOptions, storage: optuna.storages.RDBStorage
) -> tuple[optuna.Study, str]:
    """Load or create the study; the worker that creates it also creates the parent run."""
    project_run = os.environ.pop("MLFLOW_RUN_ID", None)  # `mlflow run` hands us one
    study = _load_study(options, storage)
    if study is None:
        candidate = create_parent_run(options, project_run)
        try:
            study = optuna.create_study(
                study_name=options.name, storage=storage, direction="minimize"
            )
        except optuna.exceptions.DuplicatedStudyError:
            _discard_run(candidate, project_run)  # another worker created it first
            study = _load_study(options, storage)
        else:
            study.set_user_attr(MODEL_TYPE_ATTR, options.base.model_type)
            study.set_user_attr(PARENT_ATTR, candidate)
    parent = _wait_for_parent(study, options, project_run)
    _check_study(study, parent, options)
    if project_run and project_run != parent:  # this worker's `mlflow run` run points there
        tags = {ROLE_TAG: "optuna_worker", "seismic_ml.tune_parent_run_id": parent}
        MlflowClient().log_batch(project_run, tags=[RunTag(k, v) for k, v in tags.items()])
    _attach_sampler(study, options)
    return study, parent


def _load_study(options: TuneOptions, storage: optuna.storages.RDBStorage) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=options.name, storage=storage)
    except KeyError:
        return None


def _attach_sampler(study: optuna.Study, options: TuneOptions) -> None:
    """TPE seeded by --seed for a fresh study; joiners and resumes get another stream."""
    seed = options.base.train.seed
    n_existing = len(study.get_trials(deepcopy=False))
    if n_existing:
        seed = (seed * 1_000_003 + n_existing * 7919 + os.getpid()) % 2**31
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    study.pruner = optuna.pruners.MedianPruner(
        n_startup_trials=options.pruner_startup_trials,
        n_warmup_steps=options.pruner_warmup_steps,
    )


def _wait_for_parent(study: optuna.Study, options: TuneOptions, project_run: str | None) -> str:
    """The parent run id from the study; takes over when its creator never stored one."""
    deadline = time.monotonic() + PARENT_WAIT_S
    while True:
        parent = study.user_attrs.get(PARENT_ATTR)
        if parent:
            return parent
        # The creator stores the id before any trial: trials without it mean it never will.
        if study.get_trials(deepcopy=False) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    log.warning("study %s has no MLflow parent run: creating one", options.name)
    parent = create_parent_run(options, project_run)
    study.set_user_attr(PARENT_ATTR, parent)
    study.set_user_attr(MODEL_TYPE_ATTR, options.base.model_type)
    return parent


def _check_study(study: optuna.Study, parent: str, options: TuneOptions) -> None:
    """The study tunes this model type and its parent run is on this tracking server."""
    tuned = study.user_attrs.get(MODEL_TYPE_ATTR)
    if tuned and tuned != options.base.model_type:
        raise SeismicMLError(
            f"study {options.name!r} tunes {tuned}, not {options.base.model_type}: "
            "pick another --study-name"
        )
    try:
        run = MlflowClient().get_run(parent)
    except MlflowException as exc:
        raise SeismicMLError(
            f"study {options.name!r} nests its trials under MLflow run {parent}, which "
            f"{mlflow.get_tracking_uri()} does not have: point every worker at the same "
            f"tracking server ({_first_line(exc)})"
        ) from exc
    if run.info.lifecycle_stage == "deleted":
        raise SeismicMLError(f"the parent run {parent} of study {options.name!r} was deleted")


def create_parent_run(options: TuneOptions, project_run: str | None) -> str:
    """A run for the whole study (the `mlflow run` run, if there is one) with its settings."""
    client = MlflowClient()
    base = options.base
    tags = {
        **standard_tags(base.task, base.model_type, base.data.dataset),
        ROLE_TAG: "optuna_study",
        STUDY_TAG: options.name,
        "mlflow.runName": options.name,
    }
    if project_run:
        run_id = project_run
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    else:
        experiment_id = experiment_id_for(options.experiment)
        run_id = client.create_run(experiment_id, tags=resolve_tags(tags)).info.run_id
    # Namespaced keys only: `mlflow run` logged each -P value under its bare name already.
    params = {
        "model.type": base.model_type,
        "data.dataset": base.data.dataset,
        "tune.sampler": "TPESampler",
        "tune.seed": str(base.train.seed),
        "tune.pruner": "MedianPruner",
        "tune.pruner_startup_trials": str(options.pruner_startup_trials),
        "tune.pruner_warmup_steps": str(options.pruner_warmup_steps),
        "tune.max_epochs_per_trial": str(options.max_epochs_per_trial),
        "tune.objective": "minimize best/val_loss",
        "tune.storage": redact(options.storage),
    }
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()])
    client.log_dict(run_id, base.to_params(), "config/base_config.json")
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


def _discard_run(run_id: str, project_run: str | None) -> None:
    """Delete a parent candidate that lost the race (never the run `mlflow run` created)."""
    if run_id != project_run:
        client = MlflowClient()
        client.set_terminated(run_id, "KILLED")
        client.delete_run(run_id)


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
        values = self.space.suggest(trial)
        cfg = apply_params(self.base, values, epochs=self.options.max_epochs_per_trial)
        pruning = PruningCallback(trial)
        try:
            result = train(cfg, self._tracking(trial), callbacks=[pruning])
        except optuna.TrialPruned:
            pruned_at = {"optuna.pruned_at_epoch": str(pruning.pruned_at)}
            self._close(trial, "PRUNED", "KILLED", pruned_at)
            raise
        except BaseException as exc:
            trial.set_user_attr(FAIL_REASON_ATTR, _first_line(exc))
            self._close(trial, "FAIL", None)  # tracked_run set FAILED (KILLED on a signal)
            raise
        self._close(trial, "COMPLETE", None)
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
        )

    def _close(
        self,
        trial: optuna.Trial,
        state: str,
        status: str | None,
        tags: dict[str, str] | None = None,
    ) -> None:
        """Tag the child run with the trial state; KILLED for pruning, as tracked_run can't."""
        try:
            run_id = find_child_run(self.parent, trial.number)
            if run_id is None:  # failed before the run started (e.g. an invalid config)
                return
            trial.set_user_attr(RUN_ID_ATTR, run_id)
            all_tags = {STATE_TAG: state, **(tags or {})}
            self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in all_tags.items()])
            if status:
                self.client.set_terminated(run_id, status)
        except MlflowException as exc:
            log.warning("could not tag the run of trial %d: %s", trial.number, _first_line(exc))


def find_child_run(parent: str, number: int) -> str | None:
    """The child run of a trial, found by its parent and trial number tags."""
    client = MlflowClient()
    experiment_id = client.get_run(parent).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent}' AND tags.`{NUMBER_TAG}` = '{number}'"
    runs = client.search_runs([experiment_id], filter_string=query, max_results=1)
    return runs[0].info.run_id if runs else None


def _fail_stale_child(study: optuna.Study, trial: FrozenTrial) -> None:
    """Heartbeat callback: a dead worker's trial became FAIL; close its child run FAILED too."""
    parent = study.user_attrs.get(PARENT_ATTR)
    try:
        run_id = find_child_run(parent, trial.number) if parent else None
        if run_id is not None:
            client = MlflowClient()
            client.set_tag(run_id, STATE_TAG, "FAIL")
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_terminated(run_id, "FAILED")
    except MlflowException as exc:
        log.warning("could not close the run of stale trial %d: %s", trial.number, exc)


def finish_parent(study: optuna.Study, parent: str, status: str) -> None:
    """Log the study's results to the parent; close it unless another worker still runs trials."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    log_results(study, parent)
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if not running:
        MlflowClient().set_terminated(parent, status)


def _finish_quietly(study: optuna.Study, parent: str, status: str) -> None:
    """finish_parent while another error propagates: never mask that error."""
    try:
        finish_parent(study, parent, status)
    except Exception as exc:  # the original error matters more
        log.warning("could not close the study's parent run %s: %s", parent, _first_line(exc))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None before any trial completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None


def summarize(study: optuna.Study, parent: str) -> TuneResult:
    """Counts per state and the best trial, over every worker's trials."""
    counts = dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))
    result = TuneResult(study.study_name, parent, counts)
    best = best_trial(study)
    if best is not None:
        result.best_value, result.best_params = best.value, dict(best.params)
        result.best_trial_number = best.number
        result.best_run_id = best.user_attrs.get(RUN_ID_ATTR)
    return result


def log_results(study: optuna.Study, parent: str) -> None:
    """Best value and params, trial counts and the analysis artifacts, into the parent run."""
    result = summarize(study, parent)
    step = sum(result.counts.values())
    now = int(time.time() * 1000)
    metrics = {
        f"n_trials/{s.lower()}": result.counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL")
    }
    metrics["n_trials/total"] = step
    tags = {}
    if result.best_value is not None:
        metrics["best/value"] = result.best_value
        metrics["best/trial_number"] = result.best_trial_number
        tags = {f"best.{k}": str(v) for k, v in result.best_params.items()}
        tags["best.run_id"] = result.best_run_id or ""
    client = MlflowClient()
    client.log_batch(
        parent,
        metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_artifacts(study, result, Path(tmp))
        client.log_artifacts(parent, tmp, ARTIFACT_DIR)


def write_artifacts(study: optuna.Study, result: TuneResult, folder: Path) -> None:
    """trials.csv, best_params.json and analysis.png into folder."""
    trials_table(study).to_csv(folder / "trials.csv", index=False)
    best = {
        "value": result.best_value,
        "params": result.best_params,
        "trial_number": result.best_trial_number,
        "run_id": result.best_run_id,
        "counts": result.counts,
    }
    (folder / "best_params.json").write_text(json.dumps(best, indent=2, default=str))
    plot_analysis(study, result.best_run_id, folder / "analysis.png")


def trials_table(study: optuna.Study) -> Any:
    """Optuna's trials dataframe plus the last epoch each trial reported."""
    attrs = ("number", "value", "state", "datetime_start", "duration", "params", "user_attrs")
    frame = study.trials_dataframe(attrs=attrs)
    if not frame.empty:
        frame["last_epoch"] = [t.last_step for t in study.get_trials(deepcopy=False)]
    return frame


def plot_analysis(study: optuna.Study, best_run_id: str | None, path: Path) -> Path:
    """History, parameter importances, learning rate of the top trials, the best curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    _plot_history(axes[0, 0], study)
    _plot_importances(axes[0, 1], study)
    _plot_top_learning_rates(axes[1, 0], study)
    _plot_best_curve(axes[1, 1], best_run_id)
    fig.suptitle(f"study {study.study_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_history(ax: Any, study: optuna.Study) -> None:
    """Objective per complete trial, the running best, and where pruned trials stopped."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED and t.last_step is not None]
    if complete:
        numbers, values = [t.number for t in complete], [t.value for t in complete]
        ax.scatter(numbers, values, label="complete")
        running = [min(values[: i + 1]) for i in range(len(values))]
        ax.step(numbers, running, where="post", color="C3", label="best so far")
    if pruned:
        last = [t.intermediate_values[t.last_step] for t in pruned]
        ax.scatter([t.number for t in pruned], last, marker="x", color="C7", label="pruned (last)")
    ax.set(xlabel="trial", ylabel="val/loss", title="optimisation history")
    _legend_or_note(ax, bool(complete or pruned), "no finished trials yet")


def _plot_importances(ax: Any, study: optuna.Study) -> None:
    """fANOVA importances; they need two or more complete trials."""
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    ax.set(title="parameter importances")
    if n_complete < 2:
        _note(ax, f"needs >= 2 complete trials ({n_complete} so far)")
        return
    try:
        importances = optuna.importance.get_param_importances(study)
    except Exception as exc:  # a figure panel must not fail the study
        _note(ax, f"not available: {_first_line(exc)}")
        return
    if not importances:
        _note(ax, "no parameter varied across complete trials")
        return
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names])
    ax.set(xlabel="importance")


def _plot_top_learning_rates(ax: Any, study: optuna.Study, top: int = 10) -> None:
    """Learning rate against val/loss for the best complete trials."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.value)[:top]
    ranked = [t for t in ranked if "learning_rate" in t.params]
    ax.set(title=f"learning rate of the top {top} trials")
    if not ranked:
        _note(ax, "no complete trial sampled learning_rate")
        return
    rates = [t.params["learning_rate"] for t in ranked]
    ax.scatter(rates, [t.value for t in ranked])
    for t, rate in zip(ranked, rates):
        ax.annotate(str(t.number), (rate, t.value), fontsize=8)
    ax.set(xscale="log", xlabel="learning_rate", ylabel="best val/loss")


def _plot_best_curve(ax: Any, best_run_id: str | None) -> None:
    """The best trial's per-epoch curves, read back from its child run."""
    from seismic_ml.tracking.history import metric_history

    ax.set(title="best trial", xlabel="epoch", ylabel="loss")
    if best_run_id is None:
        _note(ax, "no complete trial yet")
        return
    drawn = False
    for key in ("train/epoch_loss", "val/loss"):
        frame = metric_history(best_run_id, key)
        if not frame.empty:
            ax.plot(frame["step"], frame["value"], marker="o", label=key)
            drawn = True
    _legend_or_note(ax, drawn, "the best run logged no epochs")


def _legend_or_note(ax: Any, drawn: bool, note: str) -> None:
    if drawn:
        ax.legend()
    else:
        _note(ax, note)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)


def retrain_best(
    options: TuneOptions, base: RunConfig, study: optuna.Study, parent: str, experiment: str
) -> TrainResult:
    """Train the best trial's config for the full epochs as an ordinary (non-nested) run."""
    best = best_trial(study)
    if best is None:
        raise SeismicMLError(f"study {options.name!r} has no complete trial to retrain")
    cfg = apply_params(base, best.params)
    tags = {
        "seismic_ml.tuned_by_study": options.name,
        "seismic_ml.tune_parent_run_id": parent,
        "optuna.best_trial_number": str(best.number),
    }
    tracking = TrackingOptions(
        experiment=experiment,
        run_name=f"{options.name}-best",
        register_as=options.register_as,
        tags=tags,
    )
    result = train(cfg, tracking)
    MlflowClient().set_tag(parent, "best.retrained_run_id", result.run_id)
    return result


def _log_search_space(client: MlflowClient, parent: str, space: SearchSpace) -> None:
    client.log_dict(parent, space.to_dict(), f"{ARTIFACT_DIR}/search_space.json")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
