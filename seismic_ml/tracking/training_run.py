"""The MLflow recorder of a training: run lifecycle, resume, claims, heartbeat and metric
sending, params, inputs, results, model log and registry. `train()` is handed one and never
talks to MLflow itself."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import seisbench.data as sbd
from torch import nn

from seismic_ml.config import RunConfig
from seismic_ml.errors import BadOptionValue, SeismicMLError, first_line
from seismic_ml.model_files import WEIGHTS_DIR, write_model_files
from seismic_ml.tracking import claims, history, local, model_io
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
from seismic_ml.training.loop import Callback, LoopState, Trainer
from seismic_ml.training.recorder import TrainResult
from seismic_ml.workers import describe

CHECKPOINT_NAME = "last.pt"
# After an error, how long the metrics still queued may wait for an unreachable server.
CLOSE_WAIT_S = 30.0
log = logging.getLogger(__name__)


@dataclass
class MlflowRecorder:
    """Records each training as an MLflow run: where, under which name, what to register."""

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
    resumed: mlflow.entities.Run | None = field(default=None, init=False, repr=False)

    def resume_config(self, task: str, epochs: int | None = None) -> RunConfig:
        """The config of the run to resume (to more epochs if asked), refused when it cannot be.
        The run is read from the store once: open() reuses it."""
        self.resumed = model_io.get_run(self.resume)
        return resumed_config(self.resumed, task, epochs)

    @contextlib.contextmanager
    def open(self, cfg: RunConfig, trainer: Trainer) -> Iterator[MlflowRecording]:
        """A new run, or the run to resume; it ends FINISHED, FAILED or KILLED with the block."""
        # a checkpoint that is not weights-only is refused before the run reopens: it stays
        resumed = self._resumed_run() if self.resume else None
        snapshot = None if resumed is None else _resume_snapshot(resumed)
        tags = {**standard_tags(cfg.task, cfg.model_type, cfg.data.dataset), **self.tags}
        name = None if self.resume else self.run_name or run_name(cfg.model_type, cfg.data.dataset)
        with (
            fitted_client_retries(self.outage_limit_s),
            tracked_run(
                run_name=name,
                experiment=self.experiment,
                resumed=resumed,
                nested=self.nested,
                tags=None if self.resume else tags,
                killed_on=self.killed_on,
                system_metrics=self.system_metrics,
            ) as run,
        ):
            yield MlflowRecording(self, cfg, trainer, run.info.run_id, snapshot).begin()

    def _resumed_run(self) -> mlflow.entities.Run:
        """The run to resume, as resume_config() read it (else read now)."""
        if self.resumed is None or self.resumed.info.run_id != self.resume:
            self.resumed = model_io.get_run(self.resume)
        return self.resumed


class MlflowRecording:
    """One training's MLflow run while it trains."""

    def __init__(
        self,
        recorder: MlflowRecorder,
        cfg: RunConfig,
        trainer: Trainer,
        run_id: str,
        snapshot: dict[str, Any] | None,
    ) -> None:
        self.recorder, self.cfg, self.trainer = recorder, cfg, trainer
        self.run_id, self.resume_from = run_id, snapshot
        self.checkpoint = local.run_dir(run_id) / CHECKPOINT_NAME
        self.logged = (-1, 0)  # last step and epoch the run already holds

    def begin(self) -> MlflowRecording:
        """Claim the run; log a new run's config, or catch a resumed one up with its spool."""
        local.claim(self.run_id)
        if self.resume_from is None:
            claims.take_claim(self.run_id, 0)
            _log_config(self.cfg, self.trainer)
        else:
            replay_spool(self.run_id, self.checkpoint.parent)  # what a dead process left unsent
            mlflow.set_tag("resumed_to_epochs", str(self.cfg.train.epochs))
            self.logged = _logged_so_far(self.run_id)
        _log_prepare_time(self.trainer, self.logged[1])
        return self

    @contextlib.contextmanager
    def fitting(self) -> Iterator[list[Callback]]:
        """Checkpoint writer and metric logger; their metrics reach the run even on errors."""
        sender = MetricSender(
            self.run_id, self.checkpoint.parent, outage_limit_s=self.recorder.outage_limit_s
        )
        resumed = self.resume_from is not None
        if resumed and self.checkpoint.is_file():  # kept here: maybe never uploaded (an outage)
            sender.upload_later(self.checkpoint, CHECKPOINT_DIR)
        logger = MlflowLogger(sender.start(), self.checkpoint, *self.logged)
        try:
            yield [CheckpointWriter(self.checkpoint), logger]
        except BaseException:
            _close_quietly(sender)  # an interrupted epoch's steps still reach the run
            raise
        try:
            sender.close()  # waits for the server up to the outage limit
        except TrackingOutage as exc:
            if isinstance(exc, TrackingStoreFull):
                raise
            raise _unfinished(self.run_id, self.trainer.state, sender.last_error) from None

    def finish(self, result: TrainResult, thresholds: dict[str, float]) -> TrainResult:
        """Results into the run; an outage here leaves it for a plain --resume to finish."""
        try:
            result = self._log_results(result, thresholds)
        except SEND_ERRORS as exc:
            raise _unfinished(self.run_id, self.trainer.state, first_line(exc)) from None
        local.forget_run(self.run_id)
        return result

    def _log_results(self, result: TrainResult, thresholds: dict[str, float]) -> TrainResult:
        """History, plots, the model (registered if asked), then the final metrics."""
        history.log_history_artifacts(result.history)
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.log_artifact(str(history.plot_run_history(self.run_id, Path(tmp))), "plots")
        mlflow.set_tag("device", str(self.trainer.device))
        rec = self.recorder
        uri = _log_weights(result.model, self.cfg, thresholds, self.run_id, rec.log_model)
        if uri and rec.register_as:
            about = model_io.version_metadata(self.cfg, result.metrics["best/val_loss"])
            model_io.register(uri, rec.register_as, rec.alias, *about)
        # last: best/* on a run says that all its results arrived (has_results; a plain --resume)
        mlflow.log_metrics(result.metrics)
        return dataclasses.replace(result, model_uri=uri)


def _unfinished(run_id: str, state: LoopState, reason: str) -> TrackingOutage:
    """Training ended but its results could not reach the tracking store: how to finish it."""
    return TrackingOutage(
        f"training ended after {state.epoch} epochs, but the tracking store did not take its "
        f"results ({reason}); the checkpoint and unsent metrics are kept in "
        f"{local.run_dir(run_id)}: `--resume {run_id}` (without --epochs) uploads them and "
        "ends the run FINISHED once the store answers"
    )


def _close_quietly(sender: MetricSender) -> None:
    """Send what is queued while another error propagates; never mask that error."""
    wait_s = 0.0 if sender.outage_s else min(sender.outage_limit_s, CLOSE_WAIT_S)
    try:
        sender.close(wait_s=wait_s)
    except SeismicMLError as exc:
        log.warning("%s", exc)


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
    prepared = trainer.task.prepared
    splits = (None, None) if prepared is None else (prepared.train, prepared.dev)
    for loader, split, context, kept in (
        (trainer.train_loader, "train", "training", splits[0]),
        (trainer.val_loader, "dev", "validation", splits[1]),
    ):
        waveforms = _waveform_dataset(loader.dataset)
        known = kept.digest if kept is not None and kept.dataset is waveforms else None
        log_split(waveforms.metadata, cfg.data.dataset, str(waveforms.path), split, context, known)


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


def _resume_snapshot(run: mlflow.entities.Run) -> dict[str, Any]:
    """The weights-only snapshot a resume continues from, once params and model args agree."""
    check_run_model(run)
    kept = local.run_dir(run.info.run_id) / CHECKPOINT_NAME
    return load_checkpoint(_resume_checkpoint(run, kept))


def _resume_checkpoint(run: mlflow.entities.Run, kept: Path) -> Path:
    """The checkpoint to resume from: the one kept here (it may be newer), else the run's."""
    if kept.is_file():
        return kept
    return model_io.download_artifact(run, f"{CHECKPOINT_DIR}/{CHECKPOINT_NAME}")


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


def resumed_config(run: mlflow.entities.Run, task: str, epochs: int | None = None) -> RunConfig:
    """The config of a run to resume (optionally to more epochs), refused when it cannot be."""
    run_id = run.info.run_id
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
