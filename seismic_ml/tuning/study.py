"""tune(options, recorder): an Optuna study as a parent run, every trial a nested train() run.

Storage is Optuna's RDB storage (SQLite by default, PostgreSQL for several workers). The worker
that creates the study creates the parent run and keeps its id in the study's user attributes;
every other worker (and every resume) nests its trials under that run. Storage calls wait
out a database outage up to --storage-outage-limit (tuning/storage.py); past it the worker
stops with one line, its runs closed FAILED, and the next worker closes the trial it left.

Sampling: the worker that creates the study seeds TPE with --seed itself, so one worker on a
fresh study is reproducible; every other worker (joining, or resuming an existing study) mixes
a random nonce into it, so workers started together never draw the same stream. Each trial
records the seed of the worker that sampled it (user attr sampler_seed).
"""

from __future__ import annotations

import logging
import secrets
import time
import warnings
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import TrialState

from seismic_ml import interrupts
from seismic_ml.config import RunConfig, checked
from seismic_ml.errors import BadOptionValue, SeismicMLError, first_line
from seismic_ml.training.tasks import reuse_prepared_splits
from seismic_ml.training.train import TrainResult, train
from seismic_ml.tuning.recorder import Heartbeat, StudyRecorder
from seismic_ml.tuning.report import (
    ARTIFACT_DIR,
    TuneResult,
    best_trial,
    rebuild_report,
    summarize,
)
from seismic_ml.tuning.space import SearchSpace, apply_params, build_search_space
from seismic_ml.tuning.storage import StorageOutage, make_storage, outage_in, redact
from seismic_ml.tuning.trials import (
    PARENT_ATTR,
    TRIAL_ERRORS,
    Objective,
    fail_gone_trials,
    stale_trial_callback,
)
from seismic_ml.tuning.tune_config import TuneOptions

MODEL_TYPE_ATTR = "model_type"
TRACKING_URI_ATTR = "mlflow_tracking_uri"
METRIC_NAME = "val_loss"  # the objective: a trial's best/val_loss
# A joining worker waits this long for the creator of a new study to store the parent run id.
PARENT_WAIT_S = 30.0

log = logging.getLogger(__name__)


def tune(
    options: TuneOptions, recorder: StudyRecorder, callbacks: Sequence[Callable] = ()
) -> TuneResult:
    """Run this worker's trials of the study (creating or resuming it), recorded by recorder;
    callbacks(study, trial) are Optuna's, called as each trial of this worker ends."""
    space, base = _prepare(options)
    stale = stale_trial_callback(recorder)
    storage = make_storage(options.storage, options.storage_outage_limit_s, stale)
    study, parent, created = open_study(options, storage, recorder)
    seed = attach_sampler(study, options, created)
    experiment = recorder.reopen_parent(parent)
    recorder.log_search_space(parent, space.to_dict(), f"{ARTIFACT_DIR}/search_space.json")
    objective = Objective(options, space, base, parent, experiment, recorder, sampler_seed=seed)
    heartbeat = recorder.heartbeat(parent)
    try:
        # a signal between trials also closes the parent; trials reuse the screened, preloaded
        # splits while their data settings stay the same (#21)
        with interrupts.signals_raise(), reuse_prepared_splits():
            study.optimize(
                objective,
                n_trials=options.n_trials,
                timeout=options.timeout,
                catch=TRIAL_ERRORS,
                callbacks=list(callbacks),
            )
    except BaseException as exc:
        outage = outage_in(exc)
        if outage is not None:
            heartbeat.close(wait_s=0)
            raise stopped_by_outage(outage, parent, storage, recorder) from None
        stopped = interrupts.received() is not None or isinstance(exc, KeyboardInterrupt)
        _finish_quietly(study, parent, "KILLED" if stopped else "FAILED", heartbeat, recorder)
        raise
    heartbeat.close()
    try:
        finish_parent(study, parent, "FINISHED", recorder)
    except StorageOutage as outage:
        raise stopped_by_outage(outage, parent, storage, recorder) from None
    result = summarize(study, parent)
    if options.retrain_best:
        result.retrain = retrain_best(options, base, study, parent, experiment, recorder)
    return result


def stopped_by_outage(
    outage: StorageOutage,
    parent: str,
    storage: optuna.storages.RDBStorage,
    recorder: StudyRecorder,
) -> StorageOutage:
    """Close the parent run FAILED (KILLED after a signal) with the reason; the error to raise.

    The storage is gone, so a trial this worker ran stays RUNNING there: the next worker to
    open the study on this host closes it at once, Optuna's heartbeat anywhere else later.
    """
    status = "KILLED" if interrupts.received() is not None else "FAILED"
    recorder.stop_parent(parent, status, first_line(outage))
    return StorageOutage(
        f"{first_line(outage)}; this worker stopped: the next worker to open the study on this "
        f"host closes the trial it was running (elsewhere Optuna's heartbeat does, after "
        f"{storage.grace_period} s)"
    )


def _prepare(options: TuneOptions) -> tuple[SearchSpace, RunConfig]:
    """Validate everything a user can get wrong before any study or run exists."""
    options.validate()  # every number in its range, once
    if options.register_as and not options.retrain_best:
        raise BadOptionValue("--register-as registers the retrained model: add --retrain-best")
    space = build_search_space(
        options.base.model_type, options.search_space_file, options.fixed_params
    )
    checked(options.base)  # a bad value fails here; defaults are filled per trial (its epochs)
    return space, options.base


def open_study(
    options: TuneOptions, storage: optuna.storages.RDBStorage, recorder: StudyRecorder
) -> tuple[optuna.Study, str, bool]:
    """Load or create the study; the worker that creates it also creates the parent run.
    The study, its parent run id and whether this worker created the study."""
    project_run = recorder.project_run()  # `mlflow run` hands us one
    study = _load_study(options, storage)
    created = False
    if study is None:
        candidate = create_parent_run(options, project_run, recorder)
        try:
            study = optuna.create_study(
                study_name=options.name, storage=storage, direction="minimize"
            )
        except optuna.exceptions.DuplicatedStudyError:
            recorder.discard(candidate, project_run)  # another worker created it first
            study = _load_study(options, storage)
        else:
            created = True
            study.set_user_attr(MODEL_TYPE_ATTR, options.base.model_type)
            study.set_user_attr(PARENT_ATTR, candidate)
            describe_study(study, recorder)
    parent = _wait_for_parent(study, options, project_run, recorder)
    _check_study(study, parent, options, recorder)
    if study.metric_names is None or TRACKING_URI_ATTR not in study.user_attrs:
        describe_study(study, recorder)  # a study created before they were recorded
    fail_gone_trials(study, recorder)  # a killed worker's trials on this host: FAIL now
    if project_run and project_run != parent:  # this worker's `mlflow run` run points there
        recorder.mark_worker(project_run, parent)
    return study, parent, created


def describe_study(study: optuna.Study, recorder: StudyRecorder) -> None:
    """Name the objective (val_loss) and the tracking server (no password) in the study, for
    whoever opens it with Optuna alone (optuna-dashboard, load_study)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC_NAME])
    study.set_user_attr(TRACKING_URI_ATTR, recorder.where())


def _load_study(options: TuneOptions, storage: optuna.storages.RDBStorage) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=options.name, storage=storage)
    except KeyError:
        return None


def sampler_seed(seed: int, created: bool) -> int:
    """The TPE seed of this worker: --seed itself for the worker that created the study (a
    single worker on a fresh study is reproducible); every other worker, and every later run
    on an existing study, mixes in a random nonce so no two workers draw the same stream."""
    if created:
        return seed
    return (seed * 1_000_003 + secrets.randbits(62)) % 2**32  # numpy's seed range


def attach_sampler(study: optuna.Study, options: TuneOptions, created: bool) -> int:
    """TPE (seeded by sampler_seed) and the median pruner; the seed used."""
    seed = sampler_seed(options.base.train.seed, created)
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    study.pruner = optuna.pruners.MedianPruner(
        n_startup_trials=options.pruner_startup_trials,
        n_warmup_steps=options.pruner_warmup_steps,
    )
    return seed


def _wait_for_parent(
    study: optuna.Study, options: TuneOptions, project_run: str | None, recorder: StudyRecorder
) -> str:
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
    parent = create_parent_run(options, project_run, recorder)
    study.set_user_attr(PARENT_ATTR, parent)
    study.set_user_attr(MODEL_TYPE_ATTR, options.base.model_type)
    return parent


def _check_study(
    study: optuna.Study, parent: str, options: TuneOptions, recorder: StudyRecorder
) -> None:
    """The study tunes this model type and its parent run is on this tracking server."""
    tuned = study.user_attrs.get(MODEL_TYPE_ATTR)
    if tuned and tuned != options.base.model_type:
        raise SeismicMLError(
            f"study {options.name!r} tunes {tuned}, not {options.base.model_type}: "
            "pick another --study-name"
        )
    recorder.check_parent(parent, options.name)


def create_parent_run(
    options: TuneOptions, project_run: str | None, recorder: StudyRecorder
) -> str:
    """A run for the whole study (the `mlflow run` run, if there is one) with its settings."""
    base = options.base
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
    return recorder.create_parent(options.name, base, params, options.experiment, project_run)


def finish_parent(study: optuna.Study, parent: str, status: str, recorder: StudyRecorder) -> None:
    """Log the study's results to the parent; close it unless another worker still runs trials."""
    fail_gone_trials(study, recorder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    rebuild_report(study._storage, study.study_name, parent, recorder)  # the storage as it is
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if not running:  # FINISHED also drops the reason a worker an outage stopped left
        recorder.close_parent(parent, status)


def _finish_quietly(
    study: optuna.Study, parent: str, status: str, heartbeat: Heartbeat, recorder: StudyRecorder
) -> None:
    """finish_parent while another error propagates: never mask that error."""
    try:
        heartbeat.close(wait_s=0)
        finish_parent(study, parent, status, recorder)
    except (Exception, StorageOutage) as exc:  # the original error matters more
        log.warning("could not close the study's parent run %s: %s", parent, first_line(exc))


def retrain_best(
    options: TuneOptions,
    base: RunConfig,
    study: optuna.Study,
    parent: str,
    experiment: str,
    recorder: StudyRecorder,
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
    run_name = f"{options.name}-best"
    result = train(cfg, recorder.retrain(experiment, run_name, options.register_as, tags))
    recorder.tag_run(parent, {"best.retrained_run_id": result.run_id})
    # what callers get is what the run logged, rebuilt as any reader of the server would
    result.model = recorder.load_module(result.run_id)
    return result
