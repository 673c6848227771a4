"""`seismic-ml tune`: the click command around tuning.study.tune."""

from __future__ import annotations

import os
from typing import Any

import click

from seismic_ml import interrupts
from seismic_ml.cli.click_options import (
    Duration,
    FriendlyCommand,
    add_options,
    field_options,
    flag_option,
    in_section,
    model_field_options,
    registered_line,
    run_config_from_options,
)
from seismic_ml.config import DataConfig, TrainConfig
from seismic_ml.errors import BadOptionValue, SeismicMLError
from seismic_ml.models.registry import DEFAULT_MODEL, MODELS, get_spec, model_types

TASK_NAMES = {"phase": "phase", "mag": "magnitude", "magnitude": "magnitude"}


def _study_options() -> list[click.Parameter]:
    return in_section(
        "Study",
        [
            flag_option("task", type=click.Choice(sorted(TASK_NAMES)), help="phase or mag(nitude)"),
            flag_option(
                "model_type",
                type=click.Choice(model_types()),
                help="model to tune (default: the task's: phasenet, amag_v2)",
            ),
            flag_option(
                "n_trials", type=int, default=20, show_default=True, help="trials this worker runs"
            ),
            flag_option(
                "max_epochs_per_trial",
                type=int,
                default=10,
                show_default=True,
                help="epochs per trial; val/loss is reported to the pruner each epoch",
            ),
            flag_option(
                "timeout",
                type=float,
                help="stop starting trials after this many seconds (default: no limit)",
            ),
            flag_option("search_space", help="YAML/JSON file overriding the default search space"),
            flag_option(
                "pruner_startup_trials",
                type=int,
                default=5,
                show_default=True,
                help="complete trials before the median pruner prunes",
            ),
            flag_option(
                "pruner_warmup_steps",
                type=int,
                default=5,
                show_default=True,
                help="epochs of a trial before it can be pruned",
            ),
        ],
    )


def _storage_options() -> list[click.Parameter]:
    return in_section(
        "Optuna storage (shared by workers)",
        [
            flag_option("study_name", help="Optuna study name (default: tune-<model type>)"),
            flag_option(
                "storage",
                default="sqlite:///optuna.db",
                show_default=True,
                help="Optuna RDB URL; a PostgreSQL URL shares the study between workers",
            ),
            flag_option(
                "storage_outage_limit",
                type=Duration(),
                default="5m",
                show_default=True,
                help="how long a worker waits out an unreachable Optuna storage (retrying "
                "with backoff); then it stops with one line, its trial closed by the next worker",
            ),
        ],
    )


def _outcome_options() -> list[click.Parameter]:
    return in_section(
        "Best trial and tracking (MLflow)",
        [
            flag_option(
                "retrain_best",
                type=click.BOOL,
                is_flag=False,
                flag_value=True,
                default=False,
                help="train the best config for the full --epochs as an ordinary run "
                "(default: false)",
            ),
            flag_option(
                "register_as", help="register the retrained model under this name", default=""
            ),
            flag_option("experiment", help="MLflow experiment (default: seismic-ml)"),
        ],
    )


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
    return [*_study_options(), *_storage_options(), *_outcome_options(), *_config_options()]


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
def tune(
    task: str | None,
    model_type: str | None,
    n_trials: int,
    max_epochs_per_trial: int,
    study_name: str | None,
    storage: str,
    storage_outage_limit: float,
    timeout: float | None,
    search_space: str | None,
    retrain_best: bool,
    register_as: str,
    pruner_startup_trials: int,
    pruner_warmup_steps: int,
    experiment: str | None,
    **given: Any,
) -> None:
    """Tune hyper-parameters with Optuna; the study is an MLflow run, each trial a child run.

    Config options given here (e.g. --dataset, --batch-size) are fixed, not searched;
    --epochs is for --retrain-best, trials train for --max-epochs-per-trial.
    """
    from seismic_ml.tuning.storage import StorageOutage
    from seismic_ml.tuning.study import tune as run_tune
    from seismic_ml.tuning.tune_config import TuneOptions

    quiet_libraries()

    chosen = resolve_model_type(task, model_type)
    options = TuneOptions(
        base=run_config_from_options(chosen, given),
        n_trials=n_trials,
        max_epochs_per_trial=max_epochs_per_trial,
        study_name=study_name,
        storage=storage,
        storage_outage_limit_s=storage_outage_limit,
        timeout=timeout or None,
        search_space_file=search_space,
        fixed_params=tuple(k for k, v in given.items() if v is not None),
        pruner_startup_trials=pruner_startup_trials,
        pruner_warmup_steps=pruner_warmup_steps,
        experiment=experiment,
        retrain_best=retrain_best,
        register_as=register_as,
    )
    try:
        result = run_tune(options, callbacks=[_trial_line])
    except StorageOutage as exc:  # no Exception (see its docstring): one line here
        if interrupts.received() is not None:
            raise
        raise click.ClickException(str(exc)) from None
    _report(result)
    if register_as and result.retrain is not None and result.retrain.model_uri:
        click.echo(registered_line(register_as, result.retrain.run_id))


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
    _report(rebuild_report(opened, study_name, parent))


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
