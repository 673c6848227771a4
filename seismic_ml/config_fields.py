"""Config-field machinery below the models: a field's help, its stated valid values and their
one check; text parsing.

Every option declares what it accepts beside its field (a Range, choices, or a named check);
`ConfigBase.validate` is the one place that enforces it, and the CLI shows the same words in
--help. Model configs and run configs both build on it, so it imports nothing of the package
but errors.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from seismic_ml.errors import BadOptionValue

Spelling = Callable[[str], str]


def flag(name: str) -> str:
    """A field as a person types it on the command line: lstm_hidden -> --lstm-hidden."""
    return f"--{name.replace('_', '-')}"


def param_spelling(prefix: str) -> Spelling:
    """A field as an MLflow param spells it: model.lstm_hidden."""
    return lambda name: f"{prefix}.{name}"


def _number(value: float) -> str:
    """A bound as a person reads it: 10, 0.5, 4294967295."""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True)
class Range:
    """The interval a number must lie in; both ends bounded, so NaN and inf never fit."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        """True when value is a finite number inside the interval."""
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        left = "<" if self.low_open else "<="
        right = "<" if self.high_open else "<="
        return f"{_number(self.low)} {left} x {right} {_number(self.high)}"


@dataclass(frozen=True)
class Check:
    """A named test a value must pass (an odd kernel, a device name), in words for a person."""

    test: Callable[[Any], bool]
    words: str


def option(
    default: Any,
    help: str,
    choices: tuple | None = None,
    range: Range | None = None,
    check: Check | None = None,
    section: str | None = None,
) -> Any:
    """A config field carrying its CLI help and what it accepts: choices, a Range, a Check
    (and, where its command lists options under headings, its --help heading)."""
    meta = {"help": help, "choices": choices, "range": range, "check": check, "section": section}
    return field(default=default, metadata=meta)


def allowed_text(metadata: typing.Mapping[str, Any]) -> str:
    """What a field accepts, in the words --help and the errors both use ('' when anything)."""
    parts = []
    if metadata.get("choices"):
        parts.append("one of: " + ", ".join(map(str, metadata["choices"])))
    if metadata.get("range") is not None:
        parts.append(str(metadata["range"]))
    if metadata.get("check") is not None:
        parts.append(metadata["check"].words)
    return ", ".join(parts)


def _type_problem(annotation: Any, value: Any) -> str | None:
    """Why value is not of the field's type (None when it is; bool is no number here)."""
    args = typing.get_args(annotation)
    if type(None) in args:
        if value is None:
            return None
        annotation = next(a for a in args if a is not type(None))
    if annotation is float and isinstance(value, int | float) and not isinstance(value, bool):
        return None
    if annotation is int and isinstance(value, bool):
        return "is not an integer"
    if annotation in (int, float, str, bool) and not isinstance(value, annotation):
        return f"is not of type {annotation.__name__}"
    return None


def value_problem(metadata: typing.Mapping[str, Any], annotation: Any, value: Any) -> str | None:
    """Why value is not accepted by a field (None when it is): its type, then what it allows."""
    problem = _type_problem(annotation, value)
    if problem or value is None:
        return problem
    choices, bounds, check = metadata.get("choices"), metadata.get("range"), metadata.get("check")
    if choices and value not in choices:
        return f"is not {allowed_text(metadata)}"
    if bounds is not None and not bounds.contains(value):
        return f"is outside its range {bounds}"
    if check is not None and not check.test(value):
        return f"is not {check.words}"
    return None


def show(value: Any) -> str:
    """A value as it appears in a one-line error: numbers bare, text quoted."""
    return repr(value) if isinstance(value, str) else str(value)


class ConfigBase:
    """Shared behaviour of the config dataclasses: validation from field metadata."""

    def validate(self, spell: Spelling = flag) -> None:
        """Raise BadOptionValue naming the first field outside what it accepts, then the
        checks across fields; spell names a field (--learning-rate, or model.lstm_hidden)."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            problem = value_problem(f.metadata, hints[f.name], value)
            if problem:
                raise BadOptionValue(f"{spell(f.name)}={show(value)} {problem}")
        self.check_together(spell)

    def check_together(self, spell: Spelling) -> None:
        """Checks that involve several fields (none here); raise BadOptionValue."""


def section_from_params(cls: type, params: dict[str, str], prefix: str) -> Any:
    """Build one config dataclass from the params under prefix."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        if key in params:
            kwargs[f.name] = parse_value(hints[f.name], params[key], key)
    return cls(**kwargs)


def parse_value(annotation: Any, text: str, name: str = "value") -> Any:
    """Parse a string (from a param or the command line) into the field's type."""
    if not isinstance(text, str):
        return text
    args = typing.get_args(annotation)
    optional = type(None) in args
    if optional:
        if text in ("None", "none", "auto", ""):
            return None
        annotation = next(a for a in args if a is not type(None))
    try:
        if annotation is bool:
            return _parse_bool(text)
        if annotation in (int, float, str):
            return annotation(text)
    except ValueError as exc:
        raise BadOptionValue(f"{name}: cannot read {text!r} as {annotation.__name__}") from exc
    raise BadOptionValue(f"{name}: unsupported type {annotation}")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(text)


def field_type(cls: type, name: str) -> Any:
    """The resolved annotation of a dataclass field (None-able types unwrapped)."""
    annotation = typing.get_type_hints(cls)[name]
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or type(None) in args:
        return next(a for a in args if a is not type(None))
    return annotation


def field_problem(cls: type, name: str, value: Any) -> str | None:
    """Why value does not fit field name of cls (None when it does): for a search space's bounds."""
    meta = cls.__dataclass_fields__[name].metadata
    return value_problem(meta, typing.get_type_hints(cls)[name], value)
