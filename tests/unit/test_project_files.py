"""The MLproject, conda.yaml and pyproject.toml agree with each other and with the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from seismic_ml.cli import cli
from seismic_ml.config import RunConfig, TrainConfig
from seismic_ml.models.registry import build_model

ROOT = Path(__file__).resolve().parents[2]


def test_conda_env_installs_the_pyproject_dependencies() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(p for p in pip if p != "-e .") == sorted(pyproject)


def _command_defaults(name: str) -> dict[str, object]:
    command = cli.commands[name]
    return {p.name: p.default for p in command.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("entry, command", [("train_mag", "train-mag"),
                                            ("train_phase", "train-phase")])  # fmt: skip
def test_mlproject_defaults_match_the_cli(entry: str, command: str) -> None:
    project = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"][entry]
    cli_defaults = _command_defaults(command)
    train_defaults = TrainConfig()
    for name, spec in project["parameters"].items():
        assert f"{{{name}}}" in project["command"], name
        default = cli_defaults[name]
        if default is None:
            default = getattr(train_defaults, name, None)
            if default is None:
                from seismic_ml.config import DataConfig

                default = getattr(DataConfig(), name)
        assert str(spec["default"]) == str(default), name


def test_every_entry_point_names_a_real_command() -> None:
    project = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    for entry, spec in project.items():
        words = spec["command"].split()
        assert words[:3] == ["python", "-m", "seismic_ml"], entry
        assert words[3] in cli.commands, f"{entry} -> {words[3]}"


def test_underscore_aliases_are_accepted() -> None:
    result = CliRunner().invoke(
        cli, ["train-mag", "--model_type", "amag_v2", "--lstm_hidden", "-3"]
    )
    assert result.exit_code == 2  # a bad option value is a usage error
    assert result.output.strip() == "Error: --lstm-hidden=-3 is outside its range 1 <= x <= 2048"


def test_option_of_another_model_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["train-mag", "--model-type", "phasenet_mag",
                                      "--lstm-hidden", "8"])  # fmt: skip
    assert result.exit_code == 2
    assert "--lstm-hidden do(es) not apply to phasenet_mag" in result.output
    assert "--filter-factor" in result.output


HIGH_CAPACITY = [
    line.strip().split()
    for line in (ROOT / "README.md").read_text().splitlines()
    if line.strip().startswith("seismic-ml train-mag") and "filter" in line
]
TINY_RUN = ["--epochs", "1", "--max-steps-per-epoch", "1", "--batch-size", "8", "--max-traces", "8"]


@pytest.mark.parametrize("command", HIGH_CAPACITY, ids=lambda c: c[3])
def test_documented_high_capacity_commands_run_as_written(
    command: list[str], tiny_dataset: str
) -> None:
    args = [*command[1:], *TINY_RUN, "--dataset", tiny_dataset, "--experiment", "high-capacity"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    params = MlflowClient().get_run(re.search(r"run id: (\w+)", result.output)[1]).data.params
    given = dict(zip(command[2::2], command[3::2]))
    for flag, value in given.items():
        name = flag[2:].replace("-", "_")
        key = "model.type" if name == "model_type" else f"model.{name}"
        assert params[key] == value, shlex.join(command)
    cfg = RunConfig.from_params(params)
    narrow = build_model(cfg.model_type, type(cfg.model)(**{**vars(cfg.model), "filter_factor": 1}))
    assert int(params["model.n_parameters"]) > sum(p.numel() for p in narrow.parameters())


def test_unknown_model_type_lists_choices() -> None:
    result = CliRunner().invoke(cli, ["train-phase", "--model-type", "amag_v2"])
    assert result.exit_code == 2
    assert "phasenet_conv_lstm" in result.output


def test_help_lists_every_model_option() -> None:
    text = CliRunner().invoke(cli, ["train-mag", "--help"]).output
    for flag in ("--transformer-d-model", "--lstm-hidden", "--norm", "--loss", "--warmup-epochs"):
        assert flag in text


def test_python_dash_m_is_the_same_cli() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "seismic_ml", "--help"], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0 and "train-mag" in out.stdout and "data" in out.stdout


def test_every_readme_mlflow_run_example_runs_here_as_written() -> None:
    """No conda here: each example says --env-manager local, names the experiment and an
    entry point the MLproject has."""
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    lines = [
        line.split("#")[0].strip()
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("mlflow run .")
    ]
    assert len(lines) >= 6
    for line in lines:
        words = line.split()
        assert "--env-manager" in words and words[words.index("--env-manager") + 1] == "local"
        assert "--experiment-name" in words, line
        assert words[words.index("-e") + 1] in entry_points, line


def test_readme_activates_the_environment_before_its_first_command() -> None:
    """After `make demo`, `mlflow run` starts `python` from PATH: the README activates .venv
    once, before any command, and no later line reaches into .venv/bin by hand."""
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [i for i, line in enumerate(lines) if line.startswith(("seismic-ml ", "mlflow "))]
    activate = lines.index("source .venv/bin/activate")
    assert commands and activate < commands[0]
    assert not [line for line in lines if line.lstrip().startswith(".venv/bin/")]


def test_make_and_the_commands_share_one_seisbench_cache() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "SEISBENCH_CACHE_ROOT ?=" not in makefile and "SEISBENCH_CACHE_ROOT =" not in makefile
