"""The search space: defaults per model type, file overrides, and the errors a user sees."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from seismic_ml.config import RunConfig, with_model_defaults
from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import MODELS, get_spec
from seismic_ml.tuning.space import (
    apply_params,
    build_search_space,
    default_space,
)


def base(model_type: str) -> RunConfig:
    return RunConfig(model_type, get_spec(model_type).config_cls())


def write(tmp_path: Path, content: object, name: str = "space.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_default_space_samples_valid_configs(model_type: str) -> None:
    space = build_search_space(model_type)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        cfg = apply_params(base(model_type), space.suggest(trial), epochs=3)
        with_model_defaults(cfg).validate()
        assert cfg.train.epochs == 3
        study.tell(trial, 0.0)


def test_default_entries_follow_the_model_fields() -> None:
    assert set(default_space("phasenet")) == {
        "learning_rate", "batch_size", "filter_factor", "optimizer", "weight_decay",
        "scheduler_patience",
    }  # fmt: skip
    amag = build_search_space("amag_v2").params
    assert "dropout" in amag and amag["filter_factor"].choices == (1, 2, 4)
    for model_type in MODELS:  # every model scales its convolutions by filter_factor
        assert default_space(model_type)["filter_factor"]["choices"] == [1, 2, 4]
    assert amag["lstm_hidden"].choices == (64, 128, 256)
    assert amag["learning_rate"].to_dict() == {
        "type": "float", "low": 1e-5, "high": 1e-2, "log": True,
    }  # fmt: skip
    for model_type, spec in MODELS.items():
        model_fields = set(spec.config_cls.__dataclass_fields__)
        assert set(spec.search_space) <= model_fields, model_type
        assert set(spec.search_space) <= set(default_space(model_type)), model_type


def test_file_overrides_extends_and_drops_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
            "batch_size": {"type": "categorical", "choices": [32, 64]},
            "lstm_hidden": {"type": "int", "low": 8, "high": 64, "step": 8},
            "label_sigma": {"type": "int", "low": 10, "high": 40},
            "dropout": None,
        },
    )
    params = build_search_space("amag_v2", path).params
    assert (params["learning_rate"].low, params["learning_rate"].high) == (1e-4, 1e-2)
    assert params["batch_size"].choices == (32, 64)
    assert params["lstm_hidden"].kind == "int" and params["lstm_hidden"].section == "model"
    assert params["label_sigma"].section == "data"
    assert "dropout" not in params and "weight_decay" in params


def test_yaml_file_with_exponent_strings(tmp_path: Path) -> None:
    text = "learning_rate: {type: float, low: 1e-4, high: 1e-2, log: true}\n"
    text += "weight_decay: {type: categorical, choices: [1e-5, 0]}\n"
    params = build_search_space("phasenet", write(tmp_path, text, "space.yaml")).params
    assert params["learning_rate"].low == 1e-4
    assert params["weight_decay"].choices == (1e-5, 0.0)


def test_fields_given_on_the_command_line_are_not_searched(tmp_path: Path) -> None:
    params = build_search_space("amag_v2", fixed=["batch_size", "dataset"]).params
    assert "batch_size" not in params
    path = write(tmp_path, {"batch_size": {"type": "categorical", "choices": [8]}})
    with pytest.raises(SeismicMLError, match="batch_size fixed by a command-line option"):
        build_search_space("amag_v2", path, fixed=["batch_size"])
    dropped = write(tmp_path, {"batch_size": None}, "dropped.json")
    assert "batch_size" not in build_search_space("amag_v2", dropped, ["batch_size"]).params


def test_apply_params_puts_values_in_their_sections() -> None:
    values = {"learning_rate": 3e-4, "lstm_hidden": 64, "label_sigma": 20}
    cfg = apply_params(base("amag_v2"), values)
    assert cfg.train.learning_rate == 3e-4
    assert cfg.model.lstm_hidden == 64
    assert cfg.data.label_sigma == 20


def test_a_trial_warmup_fits_its_epochs() -> None:
    cfg = with_model_defaults(apply_params(base("amag_v2"), {"learning_rate": 5e-3}, epochs=2))
    assert (cfg.train.epochs, cfg.train.warmup_epochs) == (2, 0.5)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"lstm_hiden": {"type": "int", "low": 8, "high": 64}}, "unknown parameter 'lstm_hiden'"),
        ({"convlstm_hidden": {"type": "int", "low": 1, "high": 4}}, "valid: attention_heads"),
        ({"dropuot": None}, "unknown parameter 'dropuot'"),
        ({"epochs": {"type": "int", "low": 1, "high": 4}}, "set by --max-epochs-per-trial"),
        ({"learning_rate": {"type": "float", "low": 1e-2, "high": 1e-4}}, "must be below high"),
        ({"learning_rate": {"type": "float", "low": 0, "high": 1, "log": True}}, "low > 0"),
        ({"learning_rate": {"type": "normal", "low": 0, "high": 1}}, "unknown type 'normal'"),
        ({"learning_rate": {"type": "float", "low": 1e-4}}, "needs low and high"),
        ({"learning_rate": {"type": "float", "lo": 1, "high": 2}}, "unknown key"),
        ({"learning_rate": [1e-3, 1e-4]}, "needs a mapping with a type"),
        (
            {"lstm_hidden": {"type": "float", "low": 8, "high": 64}},
            "field is of type int; use type int or categorical",
        ),
        ({"lstm_hidden": {"type": "int", "low": 8.5, "high": 64}}, "must be an integer"),
        ({"optimizer": {"type": "int", "low": 1, "high": 2}}, "use type categorical"),
        ({"batch_size": {"type": "categorical", "choices": []}}, "non-empty list of choices"),
        ({"batch_size": {"type": "categorical", "choices": [8, "x"]}}, "cannot read 'x'"),
        (
            {"learning_rate": {"type": "float", "low": 1e-3, "high": 100}},
            "'learning_rate' high=100.0 is outside its range 0 < x <= 10",
        ),
        (
            {"batch_size": {"type": "categorical", "choices": [0, 8]}},
            "'batch_size' choice 0 is outside its range",
        ),
        (
            {"optimizer": {"type": "categorical", "choices": ["Adam", "Adamm"]}},
            "'optimizer' choice 'Adamm' is not one of",
        ),
        ([1, 2], "must map parameter names to specs"),
        ("{not json", "not valid YAML/JSON"),
    ],
)
def test_bad_space_file_is_a_clear_error(tmp_path: Path, content: object, message: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(SeismicMLError, match=message) as info:
        build_search_space("amag_v2", path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SeismicMLError, match="cannot read search space file .*missing.yaml"):
        build_search_space("amag_v2", tmp_path / "missing.yaml")
