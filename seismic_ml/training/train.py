"""train(cfg): the one function the CLI, the MLproject and the Optuna objective call."""

from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import seisbench.data as sbd
from torch import nn

from seismic_ml.config import RunConfig, with_model_defaults
from seismic_ml.data.registry import load_dataset
from seismic_ml.errors import BadOptionValue, SeismicMLError, first_line
from seismic_ml.models.registry import build_model
from seismic_ml.tracking import claims, history, local, model_io
from seismic_ml.tracking.artifacts import WEIGHTS_DIR, write_model_files
from seismic_ml.tracking.datasets import log_split
from seismic_ml.tracking.loader import check_run_model
from seismic_ml.tracking.logger import CHECKPOINT_DIR, MlflowLogger
from seismic_ml.tracking.lost_runs import DEFAULT_STALE_AFTER_S, heartbeat_age
from seismic_ml.tracking.run import run_name, standard_tags, tracked_run
from seismic_ml.tracking.sender import (
    SEND_ERRORS,
    MetricSender,
    TrackingOutage,
    TrackingStoreFull,
    fitted_client_retries,
    replay_spool,
)
from seismic_ml.training import distributed
from seismic_ml.training.checkpoint import CheckpointWriter, load_checkpoint
from seismic_ml.training.epoch_lines import EpochLine
from seismic_ml.training.loop import Callback, LoopState, Trainer, resolve_device
from seismic_ml.training.tasks import make_loaders, make_task, seed_everything
from seismic_ml.workers import describe

CHECKPOINT_NAME = "last.pt"
# After an error, how long the metrics still queued may wait for an unreachable server.
CLOSE_WAIT_S = 30.0
log = logging.getLogger(__name__)


@dataclass
class TrackingOptions:
    """Where and how a training run is recorded in MLflow."""

    experiment: str | None = None
    run_name: str | None = None
    register_as: str = ""
    alias: str = ""
    resume: str = ""
    nested: bool = False
    log_model: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    killed_on: tuple[type[BaseException], ...] = ()
    outage_limit_s: float = 900.0
    system_metrics: bool = True


@dataclass
class TrainResult:
    """What a caller gets back: the run, its final and best metrics, and the trained model."""

    run_id: str
    metrics: dict[str, float]
    model: nn.Module
    model_uri: str | None
    history: list[dict[str, float]]


def train(
    cfg: RunConfig,
    options: TrackingOptions | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train cfg's model inside an MLflow run and return the result (torchrun: rank 0 tracks)."""
    options = options or TrackingOptions()
    cfg = with_model_defaults(cfg)
    cfg.validate()
    with distributed.process_group(resolve_device(cfg.train.device)):
        seed_everything(cfg.train.seed)
        with distributed.main_first():  # rank 0 may build the synthetic set
            trainer = build_trainer(cfg)  # bad data fails here, before any run exists
        if not distributed.is_main():
            return _follow(trainer, options, callbacks)
        return _train_tracked(trainer, cfg, options, callbacks)


def _train_tracked(
    trainer: Trainer, cfg: RunConfig, options: TrackingOptions, callbacks: Sequence[Callback]
) -> TrainResult:
    """Train inside the MLflow run: a new one, or the run to resume."""
    # a checkpoint that is not weights-only is refused before the run reopens: it stays as it was
    snapshot = _resume_snapshot(options.resume) if options.resume else None
    tags = {**standard_tags(cfg.task, cfg.model_type, cfg.data.dataset), **options.tags}
    default_name = run_name(cfg.model_type, cfg.data.dataset)
    name = None if options.resume else options.run_name or default_name
    with (
        fitted_client_retries(options.outage_limit_s),
        tracked_run(
            run_name=name,
            experiment=options.experiment,
            run_id=options.resume or None,
            nested=options.nested,
            tags=None if options.resume else tags,
            killed_on=options.killed_on,
            system_metrics=options.system_metrics,
        ) as run,
    ):
        return _train_in_run(trainer, cfg, options, run.info.run_id, callbacks, snapshot)


def _follow(
    trainer: Trainer, options: TrackingOptions, callbacks: Sequence[Callback]
) -> TrainResult:
    """A torchrun rank other than 0: rank 0's run and checkpoint, the same loop, no MLflow."""
    run_id = distributed.broadcast(None)
    if options.resume:
        trainer.load_state_dict(distributed.broadcast(None))
    state = trainer.fit(callbacks)
    return TrainResult(run_id, _final_metrics(trainer), _best_model(trainer), None, state.history)


def _train_in_run(
    trainer: Trainer,
    cfg: RunConfig,
    options: TrackingOptions,
    run_id: str,
    callbacks: Sequence[Callback],
    snapshot: dict[str, Any] | None,
) -> TrainResult:
    folder = local.run_dir(run_id)
    checkpoint = folder / CHECKPOINT_NAME
    local.claim(run_id)
    distributed.broadcast(run_id)
    if not options.resume:
        claims.take_claim(run_id, 0)
    if options.resume:
        replay_spool(run_id, folder)  # metrics a dead process could not send come first
        trainer.load_state_dict(distributed.broadcast(snapshot))  # every rank resumes from it
        mlflow.set_tag("resumed_to_epochs", str(cfg.train.epochs))
    else:
        _log_config(cfg, trainer)
    logged = _logged_so_far(run_id) if options.resume else (-1, 0)
    _log_prepare_time(trainer, logged[1])
    state = _train_with_tracking(trainer, run_id, checkpoint, options, logged, callbacks)
    try:
        result = _log_results(trainer, cfg, options, run_id, state)
    except SEND_ERRORS as exc:
        raise _unfinished(run_id, state, first_line(exc)) from None
    local.forget_run(run_id)
    return result


def _unfinished(run_id: str, state: LoopState, reason: str) -> TrackingOutage:
    """Training ended but its results could not reach the tracking store: how to finish it."""
    return TrackingOutage(
        f"training ended after {state.epoch} epochs, but the tracking store did not take its "
        f"results ({reason}); the checkpoint and unsent metrics are kept in "
        f"{local.run_dir(run_id)}: `--resume {run_id}` (without --epochs) uploads them and "
        "ends the run FINISHED once the store answers"
    )


def _train_with_tracking(
    trainer: Trainer,
    run_id: str,
    checkpoint: Path,
    options: TrackingOptions,
    logged: tuple[int, int],
    callbacks: Sequence[Callback],
) -> LoopState:
    """The loop with its checkpoint writer and logger; metrics reach the run even on errors."""
    sender = MetricSender(run_id, checkpoint.parent, outage_limit_s=options.outage_limit_s)
    if options.resume and checkpoint.is_file():  # kept here: maybe never uploaded (an outage)
        sender.upload_later(checkpoint, CHECKPOINT_DIR)
    logger = MlflowLogger(sender.start(), checkpoint, *logged)
    try:
        state = trainer.fit([CheckpointWriter(checkpoint), logger, EpochLine(), *callbacks])
    except BaseException:
        _close_quietly(sender)  # an interrupted epoch's steps still reach the run
        raise
    try:
        sender.close()  # waits for the server up to the outage limit
    except TrackingOutage as exc:
        if isinstance(exc, TrackingStoreFull):
            raise
        raise _unfinished(run_id, trainer.state, sender.last_error) from None
    return state


def _close_quietly(sender: MetricSender) -> None:
    """Send what is queued while another error propagates; never mask that error."""
    wait_s = 0.0 if sender.outage_s else min(sender.outage_limit_s, CLOSE_WAIT_S)
    try:
        sender.close(wait_s=wait_s)
    except SeismicMLError as exc:
        log.warning("%s", exc)


def _log_results(
    trainer: Trainer, cfg: RunConfig, options: TrackingOptions, run_id: str, state: LoopState
) -> TrainResult:
    """Final metrics, history, best weights, plots and the model, into the run."""
    metrics = _final_metrics(trainer)
    history.log_history_artifacts(state.history)
    model = _best_model(trainer)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(history.plot_run_history(run_id, Path(tmp))), "plots")
    mlflow.set_tag("device", str(trainer.device))
    uri = _log_weights(model, cfg, best_thresholds(state), run_id, options.log_model)
    if uri and options.register_as:
        about = model_io.version_metadata(cfg, metrics["best/val_loss"])
        model_io.register(uri, options.register_as, options.alias, *about)
    # last: best/* on a run says that all its results arrived (has_results; a plain --resume)
    mlflow.log_metrics(metrics)
    return TrainResult(run_id, metrics, model, uri, state.history)


def build_trainer(cfg: RunConfig) -> Trainer:
    """Model, data loaders and trainer for a resolved config."""
    device = distributed.local_device(resolve_device(cfg.train.device))
    model = build_model(cfg.model_type, cfg.model)
    task = make_task(cfg)
    prepared = task.prepare(functools.partial(load_dataset, cfg.data.dataset))
    train_set, val_set = task.windows(prepared, model)
    if len(val_set) == 0:
        raise SeismicMLError("the validation (dev) split is empty")
    if distributed.active():
        loaders = distributed.make_sharded_loaders(train_set, val_set, cfg.train)
        return distributed.DistributedTrainer(model, task, *loaders, cfg.train, device)
    loaders = make_loaders(
        train_set, val_set, cfg.train.batch_size, cfg.train.num_workers, cfg.train.seed
    )
    return Trainer(model, task, *loaders, cfg.train, device)


def _log_config(cfg: RunConfig, trainer: Trainer) -> None:
    params = cfg.to_params()
    params["data.n_train_windows"] = str(len(trainer.train_loader.dataset))
    params["data.n_val_windows"] = str(len(trainer.val_loader.dataset))
    params["train.steps_per_epoch"] = str(trainer.steps_per_epoch)
    params.update(distributed.run_params(trainer.cfg.batch_size))
    params["model.n_parameters"] = str(sum(p.numel() for p in trainer.model.parameters()))
    params.update(trainer.task.screening.to_params())  # traces left out of train + dev
    if trainer.task.prepared is not None:  # screening keys, cached or not, preloaded or not
        params.update(trainer.task.prepared.params())
    mlflow.log_params(params)
    mlflow.log_dict(params, "config/run_config.json")
    _log_inputs(cfg, trainer)


def _log_prepare_time(trainer: Trainer, step: int) -> None:
    """data/prepare_s: seconds from the start of data preparation to now, the loop's start
    (step 0 for a new run; a resumed run logs its own start at the epochs it holds)."""
    prepared = trainer.task.prepared
    if prepared is not None:
        mlflow.log_metric("data/prepare_s", time.perf_counter() - prepared.started, step=step)


def _log_inputs(cfg: RunConfig, trainer: Trainer) -> None:
    """The training and validation splits as MLflow dataset inputs."""
    for loader, split, context in (
        (trainer.train_loader, "train", "training"),
        (trainer.val_loader, "dev", "validation"),
    ):
        waveforms = _waveform_dataset(loader.dataset)
        log_split(waveforms.metadata, cfg.data.dataset, str(waveforms.path), split, context)


def _waveform_dataset(windows: Any) -> sbd.WaveformDataset:
    """The seisbench WaveformDataset behind a window generator (or a subset of one)."""
    while not isinstance(windows, sbd.WaveformDataset):
        windows = windows.dataset
    return windows


def _logged_so_far(run_id: str) -> tuple[int, int]:
    """Last optimizer step and epoch the run holds, which a resume must not log again."""
    steps = history.metric_history(run_id, "lr")["step"]
    epochs = history.metric_history(run_id, "val/loss")["step"]
    return (int(steps.max()) if len(steps) else -1, int(epochs.max()) if len(epochs) else 0)


def _resume_snapshot(run_id: str) -> dict[str, Any]:
    """The weights-only snapshot a resume continues from, once params and model args agree."""
    check_run_model(run_id)
    return load_checkpoint(_resume_checkpoint(run_id, local.run_dir(run_id) / CHECKPOINT_NAME))


def _resume_checkpoint(run_id: str, kept: Path) -> Path:
    """The checkpoint to resume from: the one kept here (it may be newer), else the run's."""
    if kept.is_file():
        return kept
    return model_io.download_artifact(run_id, f"{CHECKPOINT_DIR}/{CHECKPOINT_NAME}")


def _final_metrics(trainer: Trainer) -> dict[str, float]:
    state = trainer.state
    return {
        "best/val_loss": state.best_val_loss,
        "best/epoch": float(state.best_epoch),
        "epochs_completed": float(state.epoch),
        "stopped_early": float(state.stopped_early),
    }


def _best_model(trainer: Trainer) -> nn.Module:
    model = trainer.model
    if trainer.best_weights is not None:
        model.load_state_dict(trainer.best_weights)
    return model.cpu().eval()


def best_thresholds(state: LoopState) -> dict[str, float]:
    """The pick thresholds the best epoch's validation tuned (val/p_threshold ...), if any."""
    best = next((h for h in state.history if h.get("epoch") == state.best_epoch), {})
    found = {phase: best.get(f"val/{phase.lower()}_threshold") for phase in "PS"}
    return {p: float(t) for p, t in found.items() if t is not None and 0 < t < 1}


def _log_weights(
    model: nn.Module, cfg: RunConfig, thresholds: dict[str, float], run_id: str, as_model: bool
) -> str | None:
    """Upload the model files once: in the logged model (its URI) or, else, in weights/."""
    if as_model:
        uri = model_io.log_model(model, cfg, thresholds, run_id)
        mlflow.set_tag(model_io.MODEL_URI_TAG, uri)
        return uri
    with tempfile.TemporaryDirectory() as tmp:
        write_model_files(model, cfg, Path(tmp), thresholds)
        mlflow.log_artifacts(tmp, artifact_path=WEIGHTS_DIR)
    return None


def resume_config(run_id: str, task: str, epochs: int | None = None) -> RunConfig:
    """The config of a run to resume (optionally to more epochs), refused when it cannot be."""
    run = model_io.get_run(run_id)
    cfg = RunConfig.from_params(run.data.params)
    if cfg.task != task:
        command = "train-phase" if cfg.task == "phase" else "train-mag"
        raise BadOptionValue(
            f"run {run_id} trained a {cfg.task} model ({cfg.model_type}), not a {task} model: "
            f"resume it with `seismic-ml {command} --resume {run_id}`"
        )
    target = cfg.train.epochs if epochs is None else epochs
    if distributed.is_main():  # under torchrun rank 0 alone checks the run and replays its spool
        _check_resumable(run, target, finish_allowed=epochs is None)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=target))


def _check_resumable(run: mlflow.entities.Run, target: int, finish_allowed: bool) -> None:
    """Refuse a run still being trained or already at the target; claim it; replay its spool.

    A run that trained all its epochs but could not upload its results (the server was down
    at its end) is not refused by a plain --resume: it trains no more and uploads them.
    """
    run_id = run.info.run_id
    _check_not_alive(run)
    claims.take_claim(run_id, claims.next_claim(run))  # atomic: of two resumes, one goes on
    replay_spool(run_id, local.run_dir(run_id))  # metrics a dead process could not send
    done = _epochs_done(run_id)
    unfinished = finish_allowed and target == done and not has_results(run)
    if target <= done and not unfinished:
        raise BadOptionValue(
            f"run {run_id} already has {done} epochs: give --epochs above {done} to train more"
        )


def _check_not_alive(run: mlflow.entities.Run) -> None:
    """A RUNNING run with a fresh heartbeat, or a fresh claim, still has a process training it."""
    holder = claims.held_by_another(run, DEFAULT_STALE_AFTER_S)
    if holder is not None:
        raise claims.RunClaimed(
            f"run {run.info.run_id} is being resumed by {describe(holder)} (claimed "
            f"{claims.claim_age(holder):.0f} s ago): only one process may train it"
        )
    age = heartbeat_age(run)
    if local.owner_gone(run.info.run_id):  # this machine's trainer of it has exited
        return
    if run.info.status == "RUNNING" and age is not None and age <= DEFAULT_STALE_AFTER_S:
        raise SeismicMLError(
            f"run {run.info.run_id} is RUNNING with a heartbeat {age:.0f} s ago: another "
            "process is training it; if that process is gone, `seismic-ml runs gc` marks it "
            f"FAILED once its heartbeat is {DEFAULT_STALE_AFTER_S:.0f} s old"
        )


def has_results(run: mlflow.entities.Run) -> bool:
    """Whether the run's end-of-training results (weights, model, then best/* metrics, logged
    last) all reached the store."""
    return "best/val_loss" in run.data.metrics


def _epochs_done(run_id: str) -> int:
    """Epochs the run holds (its per-epoch val/loss steps)."""
    steps = history.metric_history(run_id, "val/loss")["step"]
    return int(steps.max()) if len(steps) else 0
