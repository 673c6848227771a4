"""RunConfig: validation, per-model defaults and the round trip through flat MLflow params."""

import dataclasses

import pytest

from seismic_ml.config import DataConfig, RunConfig, TrainConfig, with_model_defaults
from seismic_ml.config_fields import parse_value
from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import MODELS, get_spec


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_params_round_trip_for_every_model(model_type: str) -> None:
    spec = get_spec(model_type)
    cfg = with_model_defaults(
        RunConfig(model_type, spec.config_cls(), DataConfig(magnitude_type="ML"), TrainConfig())
    )
    params = cfg.to_params()
    assert params["model.type"] == model_type
    assert params["task"] == spec.task
    assert params["train.learning_rate"] == str(spec.train_defaults["learning_rate"])
    assert RunConfig.from_params(params) == cfg


def test_non_default_values_survive_the_round_trip() -> None:
    model = get_spec("phasenet_lstm").config_cls(lstm_bidirectional=False, lstm_num_layers=2)
    train = TrainConfig(learning_rate=3e-4, optimizer="AdamW", warmup_epochs=0.5, grad_clip=0.0)
    cfg = RunConfig("phasenet_lstm", model, DataConfig(dataset="/tmp/x"), train)
    back = RunConfig.from_params(cfg.to_params())
    assert back.model.lstm_bidirectional is False
    assert back.model.lstm_num_layers == 2
    assert back.train == train
    assert back.data.dataset == "/tmp/x"


def test_per_model_training_defaults() -> None:
    expected = {
        "eqtransformer_mag": (1e-4, 16),
        "phasenet_mag": (1e-3, 32),
        "amag_v2": (1e-3, 64),
        "phasenet": (1e-3, 64),
        "phasenet_lstm": (1e-3, 64),
        "phasenet_conv_lstm": (1e-3, 64),
    }
    for model_type, (lr, batch) in expected.items():
        cfg = with_model_defaults(RunConfig(model_type, get_spec(model_type).config_cls()))
        assert (cfg.train.learning_rate, cfg.train.batch_size) == (lr, batch), model_type
        assert cfg.train.warmup_epochs == 5


@pytest.mark.parametrize(
    ("epochs", "given", "used"),
    [(20, None, 5.0), (40, None, 5.0), (8, None, 2.0), (2, None, 0.5), (1, None, 0.25),
     (2, 7.0, 7.0), (2, 0.0, 0.0)],
)  # fmt: skip
def test_warmup_default_fits_a_short_run(epochs: int, given: float | None, used: float) -> None:
    train = TrainConfig(epochs=epochs, warmup_epochs=given)
    cfg = with_model_defaults(RunConfig("amag_v2", get_spec("amag_v2").config_cls(), train=train))
    assert cfg.train.warmup_epochs == used
    assert cfg.to_params()["train.warmup_epochs"] == str(used)


def test_explicit_training_values_win_over_model_defaults() -> None:
    cfg = RunConfig("amag_v2", get_spec("amag_v2").config_cls(), train=TrainConfig(batch_size=7))
    assert with_model_defaults(cfg).train.batch_size == 7


@pytest.mark.parametrize(
    "train, message",
    [
        ({"optimizer": "RMSprop"}, "--optimizer='RMSprop' is not one of: Adam, AdamW, SGD"),
        ({"epochs": 0}, r"--epochs=0 is outside its range 1 <= x <= 10000"),
        ({"learning_rate": -1.0}, r"--learning-rate=-1.0 is outside its range 0 < x <= 10"),
        ({"scheduler_factor": 1.5}, r"--scheduler-factor=1.5 is outside its range 0 < x < 1"),
        ({"warmup_epochs": -1.0}, r"--warmup-epochs=-1.0 is outside"),
    ],
)
def test_bad_training_values_are_clear_errors(train: dict, message: str) -> None:
    with pytest.raises(SeismicMLError, match=message):
        TrainConfig(**train).validate()


def test_missing_model_type_param_is_a_clear_error() -> None:
    with pytest.raises(SeismicMLError, match="model.type"):
        RunConfig.from_params({"train.epochs": "3"})


def test_parse_value_rejects_garbage() -> None:
    with pytest.raises(SeismicMLError, match="cannot read 'abc' as int"):
        parse_value(int, "abc", "train.epochs")
    assert parse_value(bool, "false") is False
    assert parse_value(float | None, "None") is None


def test_every_train_field_has_help() -> None:
    for section in (TrainConfig, DataConfig):
        for f in dataclasses.fields(section):
            assert f.metadata.get("help"), f.name
