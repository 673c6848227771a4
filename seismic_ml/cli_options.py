"""Click options generated from the config dataclasses: one source for CLI, MLproject, params."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import click

from seismic_ml.config import field_type
from seismic_ml.errors import SeismicMLError

_CLICK_TYPES = {int: click.INT, float: click.FLOAT, bool: click.BOOL, str: click.STRING}


@dataclasses.dataclass
class FieldOption:
    """One config field as a CLI option: --dash-name plus the --underscore_name alias."""

    name: str
    annotation: type
    help: str
    choices: tuple | None
    default: Any

    def to_click(self, show_default: bool = True) -> click.Option:
        """The click option; its default is None so unset options stay distinguishable."""
        flags = [f"--{self.name.replace('_', '-')}"]
        if "_" in self.name:
            flags.append(f"--{self.name}")
        kind = click.Choice(self.choices) if self.choices else _CLICK_TYPES[self.annotation]
        default = f" [default: {self.default}]" if show_default else ""
        return click.Option([*flags, self.name], type=kind, default=None, help=self.help + default)


def field_options(classes: Iterable[type]) -> dict[str, FieldOption]:
    """The union of the fields of several config classes (shared names merge their choices)."""
    options: dict[str, FieldOption] = {}
    for cls in classes:
        for f in dataclasses.fields(cls):
            choices = f.metadata.get("choices")
            if f.name in options:
                known = options[f.name]
                if known.choices and choices:
                    known.choices = tuple(dict.fromkeys(known.choices + choices))
                continue
            options[f.name] = FieldOption(
                f.name, field_type(cls, f.name), f.metadata.get("help", ""), choices, f.default
            )
    return options


def add_options(options: Iterable[click.Option]) -> Callable:
    """Decorator appending click options to a command function."""

    def decorator(func: Callable) -> Callable:
        func.__click_params__ = list(getattr(func, "__click_params__", [])) + list(options)
        return func

    return decorator


def build_section(cls: type, given: dict[str, Any], owner: str) -> Any:
    """A config dataclass from the options the user gave; others keep the class defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k, v in given.items() if v is not None and k not in names)
    if unknown:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in unknown)
        valid = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(names)) or "none"
        raise SeismicMLError(f"{flags} do(es) not apply to {owner}; its options: {valid}")
    return cls(**{k: v for k, v in given.items() if v is not None and k in names})
