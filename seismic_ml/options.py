"""Config-field machinery below the models: a field's help, choices and checks; text parsing.

Model configs and run configs both build on it, so it imports nothing of the package but errors.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import field
from typing import Any

from seismic_ml.errors import BadOptionValue


def option(default: Any, help: str, choices: tuple | None = None, positive: bool = False) -> Any:
    """A config field that carries its CLI help, its allowed choices and a positivity check."""
    meta = {"help": help, "choices": choices, "positive": positive}
    return field(default=default, metadata=meta)


class ConfigBase:
    """Shared behaviour of the config dataclasses: validation from field metadata."""

    def validate(self) -> None:
        """Raise BadOptionValue for a value outside its choices or a non-positive size."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            choices = f.metadata.get("choices")
            if choices and value not in choices:
                allowed = ", ".join(map(str, choices))
                raise BadOptionValue(f"{f.name}={value!r} is not one of: {allowed}")
            if f.metadata.get("positive") and value is not None and value <= 0:
                raise BadOptionValue(f"{f.name} must be positive, got {value}")


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
