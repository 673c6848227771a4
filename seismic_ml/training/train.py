"""train(cfg): the one function the CLI, the MLproject and the Optuna objective call."""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from torch import nn

from seismic_ml.config import RunConfig, with_model_defaults
from seismic_ml.data.registry import load_dataset
from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import build_model
from seismic_ml.tracking import history, model_io
from seismic_ml.tracking.artifacts import WEIGHTS_DIR, write_model_files
from seismic_ml.tracking.logger import (
    CHECKPOINT_DIR,
    CHECKPOINT_NAME,
    CheckpointLogger,
    MlflowLogger,
)
from seismic_ml.tracking.run import standard_tags, tracked_run
from seismic_ml.training.checkpoint import load_checkpoint
from seismic_ml.training.loop import Callback, Trainer, resolve_device
from seismic_ml.training.tasks import make_loaders, make_task, seed_everything


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
    """Train cfg's model inside an MLflow run and return the result."""
    options = options or TrackingOptions()
    cfg = with_model_defaults(cfg)
    cfg.validate()
    seed_everything(cfg.train.seed)
    trainer = build_trainer(cfg)  # bad data fails here, before any run exists
    if options.resume:  # so does a checkpoint that is not weights-only: the run stays as it was
        trainer.load_state_dict(_download_checkpoint(options.resume))
    tags = {**standard_tags(cfg.task, cfg.model_type, cfg.data.dataset), **options.tags}
    with tracked_run(
        run_name=options.run_name,
        experiment=options.experiment,
        run_id=options.resume or None,
        nested=options.nested,
        tags=None if options.resume else tags,
        killed_on=options.killed_on,
    ) as run:
        return _train_in_run(trainer, cfg, options, run.info.run_id, callbacks)


def _train_in_run(
    trainer: Trainer,
    cfg: RunConfig,
    options: TrackingOptions,
    run_id: str,
    callbacks: Sequence[Callback],
) -> TrainResult:
    if options.resume:
        mlflow.set_tag("resumed_to_epochs", str(cfg.train.epochs))
    else:
        _log_config(cfg, trainer)
    logged = _logged_so_far(run_id) if options.resume else (-1, 0)
    logger = MlflowLogger(run_id, *logged)
    try:
        state = trainer.fit([logger, CheckpointLogger(), *callbacks])
    finally:
        logger.flush_quietly()  # an interrupted epoch's steps still reach the run
    metrics = _final_metrics(trainer)
    mlflow.log_metrics(metrics)
    history.log_history_artifacts(state.history)
    model = _best_model(trainer)
    _log_weights(model, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(history.plot_run_history(run_id, Path(tmp))), "plots")
    mlflow.set_tag("device", str(trainer.device))
    uri = None
    if options.log_model:
        uri = model_io.log_model(model, cfg)
        mlflow.set_tag(model_io.MODEL_URI_TAG, uri)
        if options.register_as:
            about = model_io.version_metadata(cfg, metrics["best/val_loss"])
            model_io.register(uri, options.register_as, options.alias, *about)
    return TrainResult(run_id, metrics, model, uri, state.history)


def build_trainer(cfg: RunConfig) -> Trainer:
    """Model, data loaders and trainer for a resolved config."""
    device = resolve_device(cfg.train.device)
    model = build_model(cfg.model_type, cfg.model)
    task = make_task(cfg)
    train_set, val_set = task.datasets(load_dataset(cfg.data.dataset), model)
    if len(val_set) == 0:
        raise SeismicMLError("the validation (dev) split is empty")
    loaders = make_loaders(
        train_set, val_set, cfg.train.batch_size, cfg.train.num_workers, cfg.train.seed
    )
    return Trainer(model, task, *loaders, cfg.train, device)


def _log_config(cfg: RunConfig, trainer: Trainer) -> None:
    params = cfg.to_params()
    params["data.n_train_windows"] = str(len(trainer.train_loader.dataset))
    params["data.n_val_windows"] = str(len(trainer.val_loader.dataset))
    params["train.steps_per_epoch"] = str(trainer.steps_per_epoch)
    params["model.n_parameters"] = str(sum(p.numel() for p in trainer.model.parameters()))
    mlflow.log_params(params)
    mlflow.log_dict(params, "config/run_config.json")


def _logged_so_far(run_id: str) -> tuple[int, int]:
    """Last optimizer step and epoch the run holds, which a resume must not log again."""
    steps = history.metric_history(run_id, "lr")["step"]
    epochs = history.metric_history(run_id, "val/loss")["step"]
    return (int(steps.max()) if len(steps) else -1, int(epochs.max()) if len(epochs) else 0)


def _download_checkpoint(run_id: str) -> dict[str, Any]:
    path = model_io.download_artifact(run_id, f"{CHECKPOINT_DIR}/{CHECKPOINT_NAME}")
    return load_checkpoint(path)


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


def _log_weights(model: nn.Module, cfg: RunConfig) -> None:
    """Best weights (safetensors) beside the JSON model args and config that rebuild the model."""
    with tempfile.TemporaryDirectory() as tmp:
        write_model_files(model, cfg, Path(tmp))
        mlflow.log_artifacts(tmp, artifact_path=WEIGHTS_DIR)


def resume_config(run_id: str, epochs: int | None = None) -> RunConfig:
    """The config of a run to resume, optionally with more epochs."""
    cfg = model_io.run_config(run_id)
    if epochs is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    return cfg
