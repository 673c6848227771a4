"""Click options generated from the config dataclasses: one source for CLI, MLproject, params."""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable, Iterable
from typing import Any

import click

from seismic_ml import interrupts
from seismic_ml.config import DataConfig, RunConfig, TrainConfig
from seismic_ml.config_fields import allowed_text, field_type
from seismic_ml.errors import BadOptionValue, SeismicMLError
from seismic_ml.models.registry import get_spec
from seismic_ml.tracking.errors import tracking_error_line

_CLICK_TYPES = {int: click.INT, float: click.FLOAT, bool: click.BOOL, str: click.STRING}
HELP_SECTION = "help_section"  # the attribute naming an option's heading in --help
DEFAULT_SECTION = "Options"
# --help headings of the config sections; a few training fields are about the machine
SECTION_HEADINGS = {DataConfig: "Data", TrainConfig: "Training"}
FIELD_HEADINGS = {"device": "Compute", "num_workers": "Compute", "precision": "Compute"}


class OneLineUsageError(click.ClickException):
    """A bad option value: one line on stderr and click's usage exit code, 2."""

    exit_code = 2


class Duration(click.ParamType):
    """A duration: seconds, or a number with s, m, h or d (90s, 10m, 2h)."""

    name = "duration"
    units = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds as a float; a malformed or negative value is a usage error."""
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        scale = self.units.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if scale else text) * (scale or 1.0)
        except ValueError:
            self.fail(f"{value!r} is not a duration such as 900, 90s, 15m or 2h", param, ctx)
        if seconds < 0:
            self.fail(f"{value!r} is negative", param, ctx)
        return seconds


def invoke_friendly(invoke: Callable[[click.Context], Any], ctx: click.Context) -> Any:
    """Run a click invoke: errors become one line (exit 2 for a bad value, 1 otherwise);
    Ctrl-C and SIGTERM end with 128 + the signal number (130, 143), whatever was raised."""
    try:
        return invoke(ctx)
    except (click.exceptions.ClickException, click.exceptions.Exit, SystemExit):
        # SystemExit: an inner command already said how it ended (the interrupt line, once)
        raise
    except BaseException as exc:
        if interrupts.received() is not None or isinstance(exc, KeyboardInterrupt):
            exit_interrupted()
        if isinstance(exc, BadOptionValue):
            raise OneLineUsageError(str(exc)) from None
        if isinstance(exc, SeismicMLError):
            raise click.ClickException(str(exc)) from None
        line = tracking_error_line(exc)
        if line is not None:
            raise click.ClickException(line) from None
        raise


def exit_interrupted() -> None:
    """Say how the process was stopped and exit with 128 + the signal number."""
    signum = interrupts.received() or signal.SIGINT
    name = interrupts.SIGNAL_NAMES.get(signum, f"signal {signum}")
    click.echo(f"interrupted by {name}: stopped cleanly", err=True)
    raise SystemExit(128 + signum) from None


class FriendlyCommand(click.Command):
    """A command whose errors are one line for a person, also when it runs outside the group;
    its --help lists options under their headings (in_section), in the order declared."""

    def invoke(self, ctx: click.Context) -> Any:
        return invoke_friendly(super().invoke, ctx)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """One block per heading, headings in the order their first option is declared."""
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and not isinstance(param, click.Argument):
                heading = getattr(param, HELP_SECTION, DEFAULT_SECTION)
                sections.setdefault(heading, []).append(record)
        for heading, rows in sections.items():
            with formatter.section(heading):
                formatter.write_dl(rows)


def in_section(heading: str, options: Iterable[click.Parameter]) -> list[click.Parameter]:
    """The options, each listed under heading in --help."""
    listed = list(options)
    for opt in listed:
        setattr(opt, HELP_SECTION, heading)
    return listed


class FriendlyGroup(click.Group):
    """A group with the same one-line errors, and FriendlyCommand as its command class."""

    command_class = FriendlyCommand

    def invoke(self, ctx: click.Context) -> Any:
        return invoke_friendly(super().invoke, ctx)


@dataclasses.dataclass
class FieldOption:
    """One config field as a CLI option: --dash-name plus the --underscore_name alias."""

    name: str
    annotation: type
    help: str
    choices: tuple | None
    default: Any
    owners: list[str] = dataclasses.field(default_factory=list)
    allowed: str = ""  # the field's range or check in words, as its errors say it
    default_text: str | None = None  # the default in words, when one value cannot say it

    def to_click(self, show_default: bool = True) -> click.Option:
        """The click option; its default is None so unset options stay distinguishable. Its
        help ends with what it accepts and its default; the configs' validate() checks them."""
        kind = click.Choice(self.choices) if self.choices else click_type(self.annotation)
        allowed = "" if self.choices else self.allowed
        default = self.shown_default() if show_default else ""
        help_text = help_with_notes(self.help, allowed, default)
        return flag_option(self.name, type=kind, default=None, help=help_text)

    def shown_default(self) -> str:
        """The default as --help says it; "" when there is none to show (None, empty text)."""
        if self.default_text is not None:
            return self.default_text
        return "" if self.default is None or self.default == "" else str(self.default)


def click_type(annotation: type) -> click.ParamType:
    """The click type of a config field's (unwrapped) annotation."""
    return _CLICK_TYPES[annotation]


def help_with_notes(text: str, allowed: str, default: str) -> str:
    """An option's help ending with what it accepts and its default: `text [range; default: x]`."""
    notes = [n for n in (allowed, default and f"default: {default}") if n]
    return text + (f" [{'; '.join(notes)}]" if notes else "")


def flag_option(name: str, **kwargs: Any) -> click.Option:
    """An option under --dash-name and its --underscore_name alias (MLproject -P keys)."""
    flags = [f"--{name.replace('_', '-')}"]
    if "_" in name:
        flags.append(f"--{name}")
    return click.Option([*flags, name], **kwargs)


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
                f.name,
                field_type(cls, f.name),
                f.metadata.get("help", ""),
                choices,
                f.default,
                allowed=allowed_text(f.metadata),
            )
    return options


def model_field_options(model_types: Iterable[str]) -> dict[str, FieldOption]:
    """The options of several model types, each help ending with the models it applies to
    and its default for each of them."""
    classes = {name: get_spec(name).config_cls for name in model_types}
    merged = field_options(classes.values())
    for name, opt in merged.items():
        fields = {m: cls.__dataclass_fields__.get(name) for m, cls in classes.items()}
        defaults = {m: f.default for m, f in fields.items() if f is not None}
        opt.help = f"{opt.help} [{', '.join(defaults)}]"
        opt.owners = list(defaults)
        opt.default_text = per_model_default(defaults)
    return merged


def per_model_default(defaults: dict[str, Any]) -> str:
    """`0.1`, or `0.1 (amag_v2: 0.2)` when some models differ from the most common value."""
    texts = {model: str(value) for model, value in defaults.items() if value is not None}
    if not texts:
        return ""
    values = list(texts.values())
    common = max(values, key=values.count)
    others = ", ".join(f"{m}: {v}" for m, v in texts.items() if v != common)
    return f"{common} ({others})" if others else common


def section_options(cls: type, show_default: bool = True) -> list[click.Option]:
    """A config section's fields as options, in declaration order, under their headings."""
    heading = SECTION_HEADINGS[cls]
    options = []
    for name, opt in field_options([cls]).items():
        options += in_section(FIELD_HEADINGS.get(name, heading), [opt.to_click(show_default)])
    return options


def run_config_from_options(model_type: str, given: dict[str, Any]) -> RunConfig:
    """The RunConfig from config options a user gave (None: not given, the default holds);
    the dataset under its canonical name."""
    sections = {"data": DataConfig, "train": TrainConfig}
    values: dict[str, dict[str, Any]] = {name: {} for name in sections}
    model: dict[str, Any] = {}
    for key, value in given.items():
        owner = next((n for n, cls in sections.items() if key in cls.__dataclass_fields__), None)
        (values[owner] if owner else model)[key] = value
    data = build_section(DataConfig, values["data"], "data")
    return RunConfig(
        model_type=model_type,
        model=build_section(get_spec(model_type).config_cls, model, model_type),
        data=dataclasses.replace(data, dataset=canonical_dataset(data.dataset)),
        train=build_section(TrainConfig, values["train"], "train"),
    )


def registered_line(name: str, run_id: str, alias: str = "") -> str:
    """`registered: models:/NAME@ALIAS (version N)`, or `registered: models:/NAME/N`."""
    from seismic_ml.tracking.model_io import registered_version

    version = registered_version(name, run_id, alias)
    if alias:
        return f"registered: models:/{name}@{alias} (version {version})"
    return f"registered: models:/{name}/{version}"


def canonical_dataset(name: str) -> str:
    """The one name a run records its dataset under (synthetic is synthetic:2000)."""
    from seismic_ml.data.registry import canonical_name  # seisbench: not for --help

    return canonical_name(name)


def add_options(options: Iterable[click.Parameter]) -> Callable:
    """Decorator adding click options to a command function, listed in --help in the order
    given, before those of decorators below it (as a stack of @click.option lists them)."""

    def decorator(func: Callable) -> Callable:
        # click reverses what the decorators collected: collect these last first
        added = list(reversed(list(options)))
        func.__click_params__ = list(getattr(func, "__click_params__", [])) + added
        return func

    return decorator


def build_section(cls: type, given: dict[str, Any], owner: str) -> Any:
    """A config dataclass from the options the user gave; others keep the class defaults."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k, v in given.items() if v is not None and k not in names)
    if unknown:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in unknown)
        valid = ", ".join(f"--{n.replace('_', '-')}" for n in sorted(names)) or "none"
        raise BadOptionValue(f"{flags} do(es) not apply to {owner}; its options: {valid}")
    return cls(**{k: v for k, v in given.items() if v is not None and k in names})
