"""The training loop without MLflow: reproducibility, resume, and the effect of every option."""

import dataclasses

import pytest
import torch

from seismic_ml.config import with_model_defaults
from seismic_ml.errors import SeismicMLError
from seismic_ml.training.loop import Trainer, resolve_device
from seismic_ml.training.tasks import seed_everything
from seismic_ml.training.train import build_trainer
from tests.conftest import tiny_run_config


def trained(cfg, epochs: int | None = None) -> Trainer:
    cfg = with_model_defaults(cfg)
    if epochs is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    seed_everything(cfg.train.seed)
    trainer = build_trainer(cfg)
    trainer.fit()
    return trainer


def weights(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_same_seed_same_numbers(tiny_dataset: str) -> None:
    a = trained(tiny_run_config(epochs=2))
    b = trained(tiny_run_config(epochs=2))
    assert _same(a, b)
    assert torch.equal(weights(a), weights(b))


def _same(a: Trainer, b: Trainer) -> bool:
    timing = ("epoch_time_s", "train/windows_per_s")
    strip = [{k: v for k, v in h.items() if k not in timing} for h in a.state.history]
    other = [{k: v for k, v in h.items() if k not in timing} for h in b.state.history]
    return strip == other


def test_resume_one_then_two_equals_two_straight(tiny_dataset: str) -> None:
    straight = trained(tiny_run_config(epochs=2))
    first = trained(tiny_run_config(epochs=1))
    snapshot = first.state_dict()
    cfg = with_model_defaults(tiny_run_config(epochs=2))
    resumed = build_trainer(cfg)
    resumed.load_state_dict(snapshot)
    assert resumed.state.epoch == 1 and resumed.state.step == 3
    resumed.fit()
    assert resumed.state.epoch == 2 and resumed.state.step == 6
    assert torch.equal(weights(resumed), weights(straight))
    assert _same(resumed, straight)


OPTION_CHANGES = {
    "epochs": 2,
    "learning_rate": 1e-2,
    "batch_size": 4,
    "warmup_epochs": 0.0,
    "optimizer": "SGD",
    "weight_decay": 0.5,
    "grad_clip": 1e-4,
    "seed": 7,
    "max_steps_per_epoch": 2,
    "precision": "bf16",
}


@pytest.fixture(scope="module")
def base_weights(tiny_dataset: str) -> torch.Tensor:
    return weights(trained(tiny_run_config()))


@pytest.mark.parametrize("option, value", sorted(OPTION_CHANGES.items()))
def test_each_training_option_changes_the_result(
    base_weights: torch.Tensor, option: str, value
) -> None:
    changed = trained(tiny_run_config(**{option: value}))
    assert not torch.equal(base_weights, weights(changed))


def test_option_table_covers_every_training_option() -> None:
    from seismic_ml.config import TrainConfig

    wiring_tested = {
        "scheduler_patience",
        "scheduler_factor",
        "scheduler_threshold",
        "early_stopping_patience",
        "device",
        "num_workers",
    }
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert names == set(OPTION_CHANGES) | wiring_tested


def test_scheduler_options_reach_the_plateau_scheduler(tiny_dataset: str) -> None:
    cfg = with_model_defaults(
        tiny_run_config(scheduler_patience=0, scheduler_factor=0.25, scheduler_threshold=0.3)
    )
    trainer = build_trainer(cfg)
    assert trainer.schedule.plateau.patience == 0
    assert trainer.schedule.plateau.threshold == 0.3
    trainer._record_epoch({"val/loss": 1.0})
    trainer._record_epoch({"val/loss": 2.0})
    assert trainer.schedule.peak_lr == pytest.approx(cfg.train.learning_rate * 0.25)


def test_early_stopping_after_patience_epochs_without_improvement(tiny_dataset: str) -> None:
    trainer = build_trainer(with_model_defaults(tiny_run_config(early_stopping_patience=2)))
    for loss in (1.0, 0.5, 0.6):
        trainer._record_epoch({"val/loss": loss})
        assert not trainer.state.stopped_early
    trainer._record_epoch({"val/loss": 0.7})
    assert trainer.state.stopped_early and trainer.state.best_epoch == 2


def test_loader_workers_are_seeded_and_reproducible(tiny_dataset: str) -> None:
    a = trained(tiny_run_config(num_workers=2))
    b = trained(tiny_run_config(num_workers=2))
    assert a.train_loader.num_workers == 2
    assert torch.equal(weights(a), weights(b))


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(SeismicMLError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.raises(SeismicMLError, match="unknown device"):
        resolve_device("tpu-ish")


def test_every_model_type_trains_one_step(tiny_dataset: str) -> None:
    from seismic_ml.models.registry import MODELS

    for model_type in MODELS:
        trainer = trained(tiny_run_config(model_type, batch_size=2, max_steps_per_epoch=1))
        assert trainer.state.step == 1
        assert torch.isfinite(torch.tensor(trainer.state.best_val_loss)), model_type


def test_bad_dataset_fails_before_any_run_is_written(tmp_path) -> None:
    import mlflow

    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    cfg = tiny_run_config(dataset=str(tmp_path / "missing"))
    with pytest.raises(SeismicMLError, match="unknown dataset"):
        train(cfg, MlflowRecorder(experiment="bad-data"))
    experiment = mlflow.get_experiment_by_name("bad-data")
    runs = mlflow.search_runs([experiment.experiment_id]) if experiment else []
    assert len(runs) == 0


class InterruptAtStep:
    """Ctrl-C in the middle of epoch 2 (steps 3, 4, 5), after step 4 was queued for logging."""

    def on_step(self, trainer, lr, loss) -> None:
        if trainer.state.step == 5:
            raise KeyboardInterrupt

    def on_epoch_end(self, trainer, metrics, is_best) -> None:
        pass


def test_interrupted_run_resumes_without_logging_a_step_twice(tiny_dataset: str) -> None:
    from mlflow.tracking import MlflowClient

    from seismic_ml.tracking.training_run import MlflowRecorder
    from seismic_ml.training.train import train

    with pytest.raises(KeyboardInterrupt):
        train(tiny_run_config(epochs=2), MlflowRecorder(run_name="ctrl-c"), [InterruptAtStep()])
    client = MlflowClient()
    run = client.search_runs(
        [client.get_experiment_by_name("seismic-ml").experiment_id],
        "attributes.run_name = 'ctrl-c'",
    )[0]
    run_id = run.info.run_id
    assert run.info.status == "KILLED"
    before = {m.step: m.value for m in client.get_metric_history(run_id, "lr")}
    assert sorted(before) == [0, 1, 2, 3, 4]  # the interrupted epoch's steps were flushed
    recorder = MlflowRecorder(resume=run_id)
    train(recorder.resume_config("magnitude", epochs=2), recorder)
    after = client.get_metric_history(run_id, "lr")
    assert sorted(m.step for m in after) == [0, 1, 2, 3, 4, 5]
    assert {m.step: m.value for m in after if m.step in before} == before
    assert sorted(m.step for m in client.get_metric_history(run_id, "val/loss")) == [1, 2]
    assert client.get_run(run_id).info.status == "FINISHED"
