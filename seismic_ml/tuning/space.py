"""The hyper-parameter search space: defaults per model type, a YAML/JSON override, validation.

A space maps config field names (of TrainConfig, DataConfig or the model's Config) to Optuna
distributions. Specs are plain mappings, the same in code and in a search-space file:
`{"type": "float", "low": 1e-5, "high": 1e-2, "log": true}`, `{"type": "int", "low": 3,
"high": 10}` or `{"type": "categorical", "choices": [64, 128]}`; in a file, `null` drops a
default entry.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from seismic_ml.config import DataConfig, RunConfig, TrainConfig
from seismic_ml.config_fields import field_problem, field_type, parse_value, show
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.models.registry import get_spec

KINDS = ("float", "int", "categorical")
SPEC_KEYS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# Set per trial by --max-epochs-per-trial, so never searched.
NOT_SEARCHABLE = ("epochs",)

DEFAULT_SEARCH_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
    "filter_factor": {"type": "categorical", "choices": [1, 2, 4]},
    "optimizer": {"type": "categorical", "choices": ["Adam", "AdamW"]},
    "weight_decay": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True},
    "scheduler_patience": {"type": "int", "low": 3, "high": 10},
    "dropout": {"type": "float", "low": 0.0, "high": 0.3},
}


# Model-specific entries, merged over the defaults. Choices are picked so every combination
# validates (e.g. each transformer_nhead divides each transformer_d_model).
@dataclass(frozen=True)
class ParamSpec:
    """One searched config field: its section, Optuna kind and its range or choices."""

    name: str
    section: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draw this parameter's value for a trial."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            step = int(self.step or 1)
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), log=self.log, step=step
            )
        return trial.suggest_categorical(self.name, list(self.choices))

    def to_dict(self) -> dict[str, Any]:
        """The spec in the search-space file format."""
        if self.kind == "categorical":
            return {"type": self.kind, "choices": list(self.choices)}
        spec = {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}
        return spec if self.step is None else {**spec, "step": self.step}


@dataclass(frozen=True)
class SearchSpace:
    """The validated parameters searched for one model type."""

    model_type: str
    params: dict[str, ParamSpec]

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample every parameter for a trial."""
        return {name: spec.suggest(trial) for name, spec in self.params.items()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The whole space in the search-space file format (logged with the study)."""
        return {name: spec.to_dict() for name, spec in self.params.items()}


def config_fields(model_type: str) -> dict[str, str]:
    """Every config field a space may name for this model type, mapped to its section."""
    sections = (
        ("model", get_spec(model_type).config_cls),
        ("train", TrainConfig),
        ("data", DataConfig),
    )
    fields: dict[str, str] = {}
    for section, cls in sections:
        for f in dataclasses.fields(cls):
            fields.setdefault(f.name, section)
    return {k: v for k, v in fields.items() if k not in NOT_SEARCHABLE}


def _section_class(model_type: str, section: str) -> type:
    classes = {"train": TrainConfig, "data": DataConfig}
    return classes.get(section) or get_spec(model_type).config_cls


def default_space(model_type: str) -> dict[str, dict[str, Any]]:
    """The default entries that apply to this model type, then its own entries."""
    fields = config_fields(model_type)
    space = {k: v for k, v in DEFAULT_SEARCH_SPACE.items() if k in fields}
    return {**space, **get_spec(model_type).search_space}


def build_search_space(
    model_type: str, path: str | Path | None = None, fixed: Iterable[str] = ()
) -> SearchSpace:
    """Defaults, overridden by a file, without the fields fixed on the command line."""
    fixed = set(fixed)
    raw: dict[str, Any] = {k: v for k, v in default_space(model_type).items() if k not in fixed}
    if path is not None:
        overrides = load_space_file(path)
        dropped = {k for k, v in overrides.items() if v is None}
        check_names(dropped, model_type, str(path))
        clash = sorted(fixed & (set(overrides) - dropped))
        if clash:
            raise SeismicMLError(
                f"{path}: {', '.join(clash)} fixed by a command-line option and also searched;"
                " drop one of them"
            )
        raw.update(overrides)
    where = str(path) if path is not None else "search space"
    return parse_space({k: v for k, v in raw.items() if v is not None}, model_type, where)


def load_space_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON search-space file into a mapping of name to spec (or None)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SeismicMLError(f"cannot read search space file {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = first_line(exc)
        raise SeismicMLError(f"{path}: not valid YAML/JSON: {first}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise SeismicMLError(f"{path}: must map parameter names to specs, e.g. {_EXAMPLE}")
    return data


_EXAMPLE = '{"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true}}'


def parse_space(
    raw: Mapping[str, Any], model_type: str, where: str = "search space"
) -> SearchSpace:
    """Validate raw specs against the config dataclasses; the first problem raises."""
    fields = check_names(raw, model_type, where)
    params = {}
    for name, spec in raw.items():
        section = fields[name]
        cls = _section_class(model_type, section)
        params[name] = parse_spec(name, spec, section, field_type(cls, name), where)
        check_fits(params[name], cls, where)
    return SearchSpace(model_type, params)


def check_fits(spec: ParamSpec, cls: type, where: str) -> None:
    """Raise when a choice, or a bound of a numeric spec, lies outside what the field accepts
    (its range, choices or check: the same words as the option's error)."""
    prefix = f"{where}: {spec.name!r}"
    if spec.kind == "categorical":
        for choice in spec.choices:
            problem = field_problem(cls, spec.name, choice)
            if problem:
                raise SeismicMLError(f"{prefix} choice {show(choice)} {problem}")
        return
    bounds = cls.__dataclass_fields__[spec.name].metadata.get("range")
    for key in ("low", "high"):
        value = getattr(spec, key)
        if bounds is not None and not bounds.contains(value):
            raise SeismicMLError(f"{prefix} {key}={show(value)} is outside its range {bounds}")


def check_names(names: Iterable[str], model_type: str, where: str) -> dict[str, str]:
    """Raise for a name that is no searchable config field; returns the fields by section."""
    fields = config_fields(model_type)
    for name in names:
        if name not in fields:
            hint = " (set by --max-epochs-per-trial)" if name in NOT_SEARCHABLE else ""
            valid = ", ".join(sorted(fields))
            raise SeismicMLError(
                f"{where}: unknown parameter {name!r}{hint} for {model_type}; valid: {valid}"
            )
    return fields


def parse_spec(name: str, spec: Any, section: str, annotation: Any, where: str) -> ParamSpec:
    """One spec checked for its keys, kind, range and the field's type."""
    prefix = f"{where}: {name!r}"
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise SeismicMLError(f"{prefix} needs a mapping with a type ({', '.join(KINDS)})")
    kind = spec["type"]
    if kind not in KINDS:
        raise SeismicMLError(f"{prefix} has unknown type {kind!r}; use one of: {', '.join(KINDS)}")
    extra = sorted(set(spec) - SPEC_KEYS[kind])
    if extra:
        allowed = ", ".join(sorted(SPEC_KEYS[kind]))
        raise SeismicMLError(f"{prefix} ({kind}) has unknown key(s) {extra}; allowed: {allowed}")
    if kind == "categorical":
        return ParamSpec(name, section, kind, choices=_choices(spec, annotation, prefix))
    return _numeric_spec(name, spec, section, kind, annotation, prefix)


def _choices(spec: Mapping[str, Any], annotation: Any, prefix: str) -> tuple:
    choices = spec.get("choices")
    if not isinstance(choices, list) or not choices:
        raise SeismicMLError(f"{prefix} needs a non-empty list of choices")
    values = tuple(_coerce(value, annotation, prefix) for value in choices)
    if len(set(values)) != len(values):
        raise SeismicMLError(f"{prefix} has repeated choices: {list(values)}")
    return values


def _coerce(value: Any, annotation: Any, prefix: str) -> Any:
    """A choice as the field's type: '1e-4' for a float field becomes 1e-4."""
    if isinstance(value, str) and annotation is not str:
        return parse_value(annotation, value, prefix)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise SeismicMLError(f"{prefix}: choice {value!r} is not a bool")
    if annotation is not bool and (
        isinstance(value, bool) or not isinstance(value, annotation) or value is None
    ):
        raise SeismicMLError(f"{prefix}: choice {value!r} is not of type {annotation.__name__}")
    return value


def _numeric_spec(
    name: str, spec: Mapping[str, Any], section: str, kind: str, annotation: Any, prefix: str
) -> ParamSpec:
    if annotation not in (int, float) or (kind == "float" and annotation is int):
        wanted = "int or categorical" if annotation is int else "categorical"
        raise SeismicMLError(
            f"{prefix}: its field is of type {annotation.__name__}; use type {wanted}"
        )
    if "low" not in spec or "high" not in spec:
        raise SeismicMLError(f"{prefix} ({kind}) needs low and high")
    cast = float if kind == "float" else int
    low, high = (_number(spec[k], cast, f"{prefix} {k}") for k in ("low", "high"))
    step = None if spec.get("step") is None else _number(spec["step"], cast, f"{prefix} step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SeismicMLError(f"{prefix} log must be true or false, got {log!r}")
    if low >= high:
        raise SeismicMLError(f"{prefix} low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise SeismicMLError(f"{prefix} log scale needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise SeismicMLError(f"{prefix} step must be positive and cannot be combined with log")
    return ParamSpec(name, section, kind, low=low, high=high, log=log, step=step)


def _number(value: Any, cast: type, what: str) -> float | int:
    if isinstance(value, bool):
        raise SeismicMLError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SeismicMLError(f"{what} must be a number, got {value!r}") from None
    if cast is int and not number.is_integer():
        raise SeismicMLError(f"{what} must be an integer, got {value!r}")
    return cast(number)


def apply_params(
    base: RunConfig, values: Mapping[str, Any], epochs: int | None = None
) -> RunConfig:
    """The base config with sampled values put into their sections (and epochs, if given)."""
    fields = config_fields(base.model_type)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise SeismicMLError(f"parameters {unknown} are not config fields of {base.model_type}")
    by_section: dict[str, dict[str, Any]] = {"model": {}, "train": {}, "data": {}}
    for name, value in values.items():
        by_section[fields[name]][name] = value
    if epochs is not None:
        by_section["train"]["epochs"] = epochs
    return dataclasses.replace(
        base,
        model=dataclasses.replace(base.model, **by_section["model"]),
        train=dataclasses.replace(base.train, **by_section["train"]),
        data=dataclasses.replace(base.data, **by_section["data"]),
    )
