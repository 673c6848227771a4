"""train(cfg): the one function the CLI, the MLproject and the Optuna objective call. It
trains and returns the result; the recorder it is handed (MLflow's, or memory) records it."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from torch import nn

from seismic_ml.config import RunConfig, checked
from seismic_ml.data.registry import load_dataset
from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import build_model
from seismic_ml.training import distributed
from seismic_ml.training.epoch_lines import EpochLine
from seismic_ml.training.loop import (
    Callback,
    LoopState,
    Trainer,
    make_optimizer,
    resolve_device,
)
from seismic_ml.training.recorder import MemoryRecorder, Recorder, TrainResult
from seismic_ml.training.tasks import make_loaders, make_task, seed_everything

__all__ = ["TrainResult", "best_thresholds", "build_trainer", "train"]


def train(
    cfg: RunConfig,
    recorder: Recorder | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train cfg's model, recorded by recorder (memory when none; torchrun: rank 0 records)."""
    recorder = MemoryRecorder() if recorder is None else recorder
    cfg = checked(cfg)  # the one check (and defaults), before any data or record exists
    with distributed.process_group(resolve_device(cfg.train.device)):
        seed_everything(cfg.train.seed)
        with distributed.main_first():  # rank 0 may build the synthetic set
            trainer = build_trainer(cfg)  # bad data fails here, before any record exists
        if not distributed.is_main():
            return _follow(trainer, callbacks)
        with recorder.open(cfg, trainer) as recording:
            distributed.broadcast(recording.run_id)
            if distributed.broadcast(recording.resume_from) is not None:  # every rank resumes
                trainer.load_state_dict(recording.resume_from)
            with recording.fitting() as recorded:
                state = trainer.fit([*recorded, EpochLine(), *callbacks])
            return recording.finish(
                _result(trainer, recording.run_id, state), best_thresholds(state)
            )


def _follow(trainer: Trainer, callbacks: Sequence[Callback]) -> TrainResult:
    """A torchrun rank other than 0: rank 0's run and checkpoint, the same loop, no recorder."""
    run_id = distributed.broadcast(None)
    snapshot = distributed.broadcast(None)
    if snapshot is not None:
        trainer.load_state_dict(snapshot)
    return _result(trainer, run_id, trainer.fit(callbacks))


def _result(trainer: Trainer, run_id: str, state: LoopState) -> TrainResult:
    """Final metrics and the best epoch's model, as a caller gets them before recording."""
    return TrainResult(run_id, _final_metrics(trainer), _best_model(trainer), None, state.history)


def build_trainer(cfg: RunConfig) -> Trainer:
    """Model, data loaders and trainer for a resolved config."""
    device = distributed.local_device(resolve_device(cfg.train.device))
    model = build_model(cfg.model_type, cfg.model).to(device)
    # before the data's clock (data/prepare_s) starts: a process's first optimizer imports
    # torch's compiler stack (about 2 s on a CPU), which is no part of preparing the data
    optimizer = make_optimizer(model, cfg.train)
    task = make_task(cfg)
    prepared = task.prepare(functools.partial(load_dataset, cfg.data.dataset))
    train_set, val_set = task.windows(prepared, model)
    if len(val_set) == 0:
        raise SeismicMLError("the validation (dev) split is empty")
    if distributed.active():
        loaders = distributed.make_sharded_loaders(train_set, val_set, cfg.train)
        return distributed.DistributedTrainer(model, task, *loaders, cfg.train, device, optimizer)
    loaders = make_loaders(
        train_set, val_set, cfg.train.batch_size, cfg.train.num_workers, cfg.train.seed
    )
    return Trainer(model, task, *loaders, cfg.train, device, optimizer)


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
