"""--help lists options in a user's order under headings, and shows only true defaults."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from seismic_ml.cli.main import cli


def _help(*path: str) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.output


def _flags(text: str) -> list[str]:
    """The first flag of each option line, in the order --help lists them (after the text)."""
    options = text[re.search(r"^\w[^\n]*:$", text, flags=re.M).start() :]
    return re.findall(r"^  (--[a-z-]+|-h)", options, flags=re.M)


def _commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*path, name))
    return found


def test_train_mag_lists_data_model_training_compute_tracking_in_that_order() -> None:
    text = _help("train-mag")
    assert re.findall(r"^(\w[\w ()]*):$", text, flags=re.M) == [
        "Data", "Model", "Training", "Compute", "Tracking (MLflow)", "Options",
    ]  # fmt: skip
    flags = _flags(text)
    assert flags[:2] == ["--dataset", "--magnitude-type"]
    assert flags.index("--model-type") == 5  # first of Model, after the five data options
    assert flags.index("--epochs") < flags.index("--learning-rate") < flags.index("--device")
    assert flags[-3:] == ["--tracking-outage-limit", "--system-metrics", "-h"]
    model = text.split("\nModel:\n")[1].split("\nTraining:\n")[0]
    assert "--lstm-hidden" in model and "--epochs" not in model
    assert "default: 0.1 (amag_v2: 0.2)" in " ".join(model.split())  # --dropout, per model


def test_eval_mag_lists_what_to_evaluate_first_and_the_run_checks_last() -> None:
    text = _help("eval-mag")
    headings = re.findall(r"^(\w[^\n]*):$", text, flags=re.M)
    assert headings[:4] == ["Model to evaluate", "Data", "Scoring", "Output"]
    assert headings[4].startswith("Checks")
    flags = _flags(text)
    assert flags[:5] == ["--run-id", "--model-uri", "--dataset", "--split", "--max-traces"]
    assert flags.index("--experiment") < flags.index("--model-type") < flags.index("--lstm-hidden")


def test_tune_lists_the_study_before_the_fixed_config_options() -> None:
    flags = _flags(_help("tune"))
    assert flags[:2] == ["--task", "--model-type"]
    assert flags.index("--storage") < flags.index("--register-as") < flags.index("--dataset")
    assert flags.index("--dataset") < flags.index("--epochs") < flags.index("--lstm-hidden")


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


@pytest.mark.parametrize("path", _commands(), ids=" ".join)
def test_no_command_shows_an_untrue_default(path: tuple[str, ...]) -> None:
    assert "default: None" not in " ".join(_help(*path).split())
    command = _command(path)
    ctx = command.make_context(path[-1], [], resilient_parsing=True)
    for param in command.params:
        record = param.get_help_record(ctx)
        if record is None or isinstance(param, click.Argument):
            continue
        text = record[1]
        assert "default: None" not in text and "[default: ]" not in text, record
        # one default per option: "(default: per model)" never beside a value
        assert text.count("default:") <= 1, record


def test_every_tune_options_field_is_a_tune_option_with_its_range_and_default() -> None:
    import dataclasses

    from seismic_ml.tuning.tune_config import NOT_OPTIONS, TuneOptions, tune_flag

    text = " ".join(_help("tune").split())
    flags = _flags(_help("tune"))
    for f in dataclasses.fields(TuneOptions):
        if f.name in NOT_OPTIONS:
            continue
        assert tune_flag(f.name) in flags, f.name
        assert " ".join(f.metadata["help"].split()) in text, f.name
        if f.metadata["range"] is not None:
            assert str(f.metadata["range"]) in text, f.name
    assert "default: 20]" in text and "default: 300s]" in text  # --n-trials, the outage limit
