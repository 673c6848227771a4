"""`seismic-ml tune`: the click command around tuning.study.tune."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from seismic_ml import interrupts
from seismic_ml.cli.click_options import (
    Duration,
    FriendlyCommand,
    add_options,
    click_type,
    field_options,
    flag_option,
    help_with_notes,
    in_section,
    model_field_options,
    registered_line,
    run_config_from_options,
)
from seismic_ml.config import DataConfig, TrainConfig
from seismic_ml.config_fields import allowed_text, field_type
from seismic_ml.errors import BadOptionValue, SeismicMLError
from seismic_ml.models.registry import DEFAULT_MODEL, MODELS, get_spec, model_types
from seismic_ml.tuning.tune_config import NOT_OPTIONS, STUDY, TuneOptions, tune_flag

TASK_NAMES = {"phase": "phase", "mag": "magnitude", "magnitude": "magnitude"}


def _model_choice_options() -> list[click.Parameter]:
    """--task and --model-type: they choose the model whose base config is tuned."""
    return in_section(
        STUDY,
        [
            flag_option("task", type=click.Choice(sorted(TASK_NAMES)), help="phase or mag(nitude)"),
            flag_option(
                "model_type",
                type=click.Choice(model_types()),
                help="model to tune (default: the task's: phasenet, amag_v2)",
            ),
        ],
    )


def _tune_options() -> list[click.Parameter]:
    """TuneOptions' fields as options, in its order: help, default, range and heading from
    the field (one source for the dataclass, the checks and --help)."""
    return [
        opt
        for f in dataclasses.fields(TuneOptions)
        if f.name not in NOT_OPTIONS
        for opt in in_section(f.metadata["section"], [_tune_option(f)])
    ]


def _param_name(field_name: str) -> str:
    """The click parameter a TuneOptions field arrives as (storage_outage_limit_s ->
    storage_outage_limit)."""
    return tune_flag(field_name).removeprefix("--").replace("-", "_")


def _tune_option(f: dataclasses.Field) -> click.Option:
    """One TuneOptions field as a click option under its tune flag."""
    if f.name.endswith("_s"):  # seconds: typed as a duration (90s, 10m, 2h)
        default_text, kind = f"{f.default:g}s", Duration()
    else:
        default_text = "" if f.default in (None, "") else str(f.default).lower()
        kind = click_type(field_type(TuneOptions, f.name))
    help_text = help_with_notes(f.metadata["help"], allowed_text(f.metadata), default_text)
    name = _param_name(f.name)
    if kind is click.BOOL:  # --retrain-best alone, or --retrain-best true|false
        return flag_option(
            name, type=kind, is_flag=False, flag_value=True, default=f.default, help=help_text
        )
    return flag_option(name, type=kind, default=f.default, help=help_text)


def _config_options() -> list[click.Parameter]:
    """Every data, train and model field: given ones form the base config and are not searched."""
    fields = [
        ("Data (a given option is fixed, not searched)", field_options([DataConfig])),
        ("Training (a given option is fixed, not searched)", field_options([TrainConfig])),
        ("Model (a given option is fixed, not searched)", model_field_options(MODELS)),
    ]
    return [
        opt
        for heading, options in fields
        for opt in in_section(heading, [o.to_click(show_default=False) for o in options.values()])
    ]


def _all_options() -> list[click.Parameter]:
    """The tune options, then the config fields, in --help order."""
    return [*_model_choice_options(), *_tune_options(), *_config_options()]


def resolve_model_type(task: str | None, model_type: str | None) -> str:
    """The model type from --model-type, else the task's default; they must agree."""
    if model_type is None:
        if task is None:
            raise BadOptionValue(
                "--task and --model-type: give --task (phase or mag) or --model-type"
            )
        return DEFAULT_MODEL[TASK_NAMES[task]]
    if task is not None and get_spec(model_type).task != TASK_NAMES[task]:
        raise BadOptionValue(
            f"--model-type={model_type!r} is a {get_spec(model_type).task} model, "
            f"not --task={task!r}"
        )
    return model_type


@click.command("tune", cls=FriendlyCommand)
@add_options(_all_options())
def tune(task: str | None, model_type: str | None, **given: Any) -> None:
    """Tune hyper-parameters with Optuna; the study is an MLflow run, each trial a child run.

    Config options given here (e.g. --dataset, --batch-size) are fixed, not searched;
    --epochs is for --retrain-best, trials train for --max-epochs-per-trial.
    """
    from seismic_ml.tracking.study_runs import MlflowStudyRecorder
    from seismic_ml.tuning.storage import StorageOutage
    from seismic_ml.tuning.study import tune as run_tune

    quiet_libraries()
    fields = {f.name for f in dataclasses.fields(TuneOptions)} - set(NOT_OPTIONS)
    asked = {f: given.pop(_param_name(f)) for f in fields}
    options = TuneOptions(
        base=run_config_from_options(resolve_model_type(task, model_type), given),
        fixed_params=tuple(k for k, v in given.items() if v is not None),
        **{**asked, "timeout": asked["timeout"] or None},
    )
    try:
        result = run_tune(options, MlflowStudyRecorder(), callbacks=[_trial_line])
    except StorageOutage as exc:  # no Exception (see its docstring): one line here
        if interrupts.received() is not None:
            raise
        raise click.ClickException(str(exc)) from None
    _report(result)
    if options.register_as and result.retrain is not None and result.retrain.model_uri:
        click.echo(registered_line(options.register_as, result.retrain.run_id))


def quiet_libraries() -> None:
    """tune prints its own lines only: no Optuna INFO per trial, no MLflow "View run" links
    (unless the user set MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def _trial_line(study: Any, trial: Any) -> None:
    """One line as each of this worker's trials ends (Optuna's own lines are off)."""
    state = trial.state.name.lower()
    if trial.state.name == "COMPLETE":
        detail = f"val_loss {trial.value:.4f}"
    elif trial.state.name == "PRUNED":
        detail = f"at epoch {trial.last_step}"
    else:
        detail = trial.user_attrs.get("fail_reason", "")
    click.echo(f"Trial {trial.number} finished: {state}, {detail}; params {trial.params}")


@click.command("tune-report", cls=FriendlyCommand)
@click.option("--study-name", required=True, help="the Optuna study (e.g. tune-amag_v2)")
@click.option(
    "--storage",
    default="sqlite:///optuna.db",
    show_default=True,
    help="Optuna RDB URL the study is stored in",
)
def tune_report(study_name: str, storage: str) -> None:
    """Rebuild a study's report in its MLflow parent run from the Optuna storage as it is now:
    tuning/trials.csv, best_params.json, analysis.png, best.* tags and n_trials/* metrics."""
    from seismic_ml.tracking.study_runs import MlflowStudyRecorder
    from seismic_ml.tuning.report import rebuild_report
    from seismic_ml.tuning.storage import make_storage, redact
    from seismic_ml.tuning.trials import PARENT_ATTR

    quiet_libraries()
    path = storage.removeprefix("sqlite:///")
    if storage.startswith("sqlite:///") and not os.path.exists(path):
        raise BadOptionValue(f"--storage={storage!r}: there is no file {path}")
    opened = make_storage(storage)
    names = [s.study_name for s in opened.get_all_studies()]
    if study_name not in names:
        known = ", ".join(sorted(names)) or "none"
        raise BadOptionValue(
            f"--study-name={study_name!r} is not in {redact(storage)} (studies: {known})"
        )
    import optuna

    parent = optuna.load_study(study_name=study_name, storage=opened).user_attrs.get(PARENT_ATTR)
    if not parent:
        raise SeismicMLError(f"study {study_name!r} has no MLflow parent run to report into")
    _report(rebuild_report(opened, study_name, parent, MlflowStudyRecorder()))


def _report(result: Any) -> None:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(result.counts.items()))
    click.echo(f"study {result.study_name}: {counts or 'no trials'}")
    click.echo(f"parent run id: {result.parent_run_id}")
    if result.best_value is None:
        click.echo("no complete trial yet")
    else:
        click.echo(f"best trial {result.best_trial_number}: val/loss {result.best_value:.4f}")
        click.echo(f"best params: {result.best_params}")
        click.echo(f"best run id: {result.best_run_id}")
    if result.retrain is not None:
        click.echo(f"retrained run id: {result.retrain.run_id}")
        if result.retrain.model_uri:
            click.echo(f"model: {result.retrain.model_uri}")
