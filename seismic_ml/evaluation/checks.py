"""Checks before an evaluation: the model's task, and command-line options against the run."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from seismic_ml.config import RunConfig
from seismic_ml.config_fields import parse_value
from seismic_ml.errors import SeismicMLError

TASK_COMMANDS = {"phase": "eval-phase", "magnitude": "eval-mag"}


def check_task(cfg: RunConfig, task: str, run_id: str) -> None:
    """A phase model cannot be scored as a magnitude model and vice versa."""
    if task not in TASK_COMMANDS:
        raise SeismicMLError(f"unknown task {task!r}; known: {', '.join(TASK_COMMANDS)}")
    if cfg.task != task:
        raise SeismicMLError(
            f"run {run_id} trained a {cfg.task} model ({cfg.model_type}); "
            f"evaluate it with `seismic-ml {TASK_COMMANDS[cfg.task]}`"
        )


def check_overrides(cfg: RunConfig, given: dict[str, Any], run_id: str) -> None:
    """Model options from the command line must match the run: show both values if not."""
    given = {k: v for k, v in given.items() if v is not None}
    trained = {"model_type": cfg.model_type, **dataclasses.asdict(cfg.model)}
    hints = {"model_type": str, **typing.get_type_hints(type(cfg.model))}
    unknown = sorted(k for k in given if k not in trained)
    if unknown:
        flags = ", ".join(_flag(k) for k in unknown)
        raise SeismicMLError(f"{flags} do(es) not apply to {cfg.model_type} (run {run_id})")
    conflicts = [
        f"{_flag(k)} {given[k]} given, but the run has {_param(k)}={trained[k]}"
        for k in sorted(given)
        if not _same(parse_value(hints[k], given[k], k), trained[k])
    ]
    if conflicts:
        raise SeismicMLError(
            f"options contradict run {run_id}: "
            + "; ".join(conflicts)
            + ". Evaluation takes every model option from the run; drop the option"
        )


def _same(a: Any, b: Any) -> bool:
    """Equal values, floats compared with a tolerance."""
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b))
    return a == b


def _flag(name: str) -> str:
    """The command-line flag of an option name."""
    return f"--{name.replace('_', '-')}"


def _param(name: str) -> str:
    """The MLflow param key of an option name."""
    return "model.type" if name == "model_type" else f"model.{name}"
