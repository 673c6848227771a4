"""The seismic-ml command line: a thin layer that parses into configs and calls the library."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from seismic_ml import interrupts, progress
from seismic_ml.cli.click_options import (
    Duration,
    FriendlyCommand,
    FriendlyGroup,
    add_options,
    flag_option,
    in_section,
    model_field_options,
    registered_line,
    run_config_from_options,
    section_options,
)
from seismic_ml.cli.evaluation import eval_mag, eval_phase, predict
from seismic_ml.cli.export import export
from seismic_ml.cli.tuning import tune, tune_report
from seismic_ml.config import DataConfig, TrainConfig
from seismic_ml.errors import BadOptionValue, SeismicMLError, first_line
from seismic_ml.models.registry import DEFAULT_MODEL, model_types

EXIT_PROBLEMS_FOUND = 3  # `data inspect` printed a non-empty problem table


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="seismic-ml")
@click.option("-q", "--quiet", is_flag=True, help="print nothing but results and errors")
def cli(quiet: bool) -> None:
    """Seismic phase picking and magnitude estimation, tracked in MLflow."""
    progress.set_quiet(quiet)
    logging.basicConfig(level=logging.ERROR if quiet else logging.WARNING, format="%(message)s")
    # MLflow's INFO lines (table creation, system-metrics start and stop) are not for users.
    # mlflow sets its loggers' level when it is imported, which now happens later, inside a
    # command: its own variable says which level (a user's setting wins).
    level = "ERROR" if quiet else "WARNING"
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", level)
    # MLflow's per-download bars end without a newline: the next result line would join them
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # ours say enough
    logging.getLogger("mlflow").setLevel(level)
    # urllib3 warns at every retry of an unreachable server ("Retrying (Retry(total=4...")):
    # during an outage that floods stderr; the sender says it once, and again when it ends
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def _model_options(task: str) -> list[click.Parameter]:
    """--model-type, then the options of the task's models (shared ones first)."""
    model_type = flag_option(
        "model_type",
        default=DEFAULT_MODEL[task],
        type=click.Choice(model_types(task)),
        show_default=True,
        help="the network to train",
    )
    merged = model_field_options(model_types(task))
    return in_section("Model", [model_type, *(opt.to_click() for opt in merged.values())])


def _tracking_options() -> list[click.Parameter]:
    return in_section(
        "Tracking (MLflow)",
        [
            click.Option(["--experiment"], help="MLflow experiment (default: seismic-ml)"),
            flag_option("run_name", help="MLflow run name (default: model, dataset and time)"),
            flag_option(
                "register_as",
                default="",
                help="register the model under this name in the MLflow registry",
            ),
            click.Option(["--alias"], default="", help="registry alias for the new version"),
            click.Option(["--resume"], default="", help="continue this run id from its checkpoint"),
            flag_option(
                "tracking_outage_limit",
                type=Duration(),
                default="15m",
                show_default=True,
                help="how long training goes on while the tracking server is unreachable "
                "(metrics are spooled locally meanwhile); then it stops, resumable",
            ),
            click.Option(
                ["--system-metrics/--no-system-metrics"],
                default=True,
                show_default=True,
                help="log CPU, memory (and GPU) use to the run with MLflow's system metrics",
            ),
        ],
    )


def make_train_command(task: str) -> click.Command:
    """train-phase / train-mag: every option generated from the config dataclasses, listed
    under Data, Model, Training, Compute and Tracking in --help."""

    @add_options(
        [
            *section_options(DataConfig),
            *_model_options(task),
            *section_options(TrainConfig),
            *_tracking_options(),
        ]
    )
    def command(
        model_type: str,
        experiment: str | None,
        run_name: str | None,
        register_as: str,
        alias: str,
        resume: str,
        tracking_outage_limit: float,
        system_metrics: bool,
        **given: Any,
    ) -> None:
        from seismic_ml.tracking.training_run import MlflowRecorder
        from seismic_ml.training import distributed
        from seismic_ml.training.train import train

        recorder = MlflowRecorder(
            experiment,
            run_name,
            register_as,
            alias,
            resume,
            outage_limit_s=tracking_outage_limit,
            system_metrics=system_metrics,
        )
        if resume:
            _only_epochs_with_resume(given)
            cfg = recorder.resume_config(task, given.get("epochs"))  # reads the run, once
        else:
            cfg = run_config_from_options(model_type, given)  # train() checks it
        result = train(cfg, recorder)
        if distributed.is_main():  # under torchrun the other ranks stay quiet
            _report(result)
            if register_as and result.model_uri:
                click.echo(registered_line(register_as, result.run_id, alias))

    command.__doc__ = f"Train a {task} model; every run is an MLflow run."
    name = "train-phase" if task == "phase" else "train-mag"
    return click.command(name, cls=FriendlyCommand)(command)


def _only_epochs_with_resume(given: dict[str, Any]) -> None:
    extra = sorted(k for k, v in given.items() if v is not None and k != "epochs")
    if extra:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in extra)
        raise BadOptionValue(f"with --resume the config comes from the run; drop {flags}")


def _report(result: Any) -> None:
    best = result.metrics
    click.echo(f"run id: {result.run_id}")
    click.echo(f"best val/loss {best['best/val_loss']:.4f} at epoch {int(best['best/epoch'])}")
    if result.model_uri:
        click.echo(f"model: {result.model_uri}")


cli.add_command(make_train_command("phase"))
cli.add_command(make_train_command("magnitude"))
cli.add_command(eval_phase)
cli.add_command(eval_mag)
cli.add_command(predict)
cli.add_command(tune)
cli.add_command(tune_report)
cli.add_command(export)


@cli.command("plot-history")
@click.option("--run-id", "--run_id", "run_id", required=True, help="training run to plot")
@click.option("--plot/--no-plot", default=True, help="write the PNG and log it to the run")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("outputs"),
    show_default=True,
    help="folder for the PNG",
)
def plot_history(run_id: str, plot: bool, out: Path) -> None:
    """Loss and learning-rate curves of a run, from its MLflow metric history."""
    from seismic_ml.tracking.history import (
        EPOCH_KEYS,
        log_plot,
        metric_history,
        plot_run_history,
    )
    from seismic_ml.tracking.model_io import get_run
    from seismic_ml.tracking.store import require_store

    require_store()
    get_run(run_id)
    for key in EPOCH_KEYS:
        frame = metric_history(run_id, key)
        values = ", ".join(f"{v:.4f}" for v in frame["value"])
        click.echo(f"{key} per epoch: {values or '(none)'}")
    if plot:
        path = plot_run_history(run_id, out / run_id)
        log_plot(run_id, path)
        click.echo(f"wrote {path} and logged it to run {run_id} under plots/")


@cli.group()
def runs() -> None:
    """Look after the runs in the tracking store."""


@runs.command("gc")
@click.option(
    "--stale-after",
    "--stale_after",
    "stale_after",
    type=Duration(),
    default="10m",
    show_default=True,
    help="a RUNNING run whose heartbeat is older than this is lost",
)
@click.option("--experiment", multiple=True, help="only this experiment (repeatable; default all)")
@click.option("--dry-run", "--dry_run", "dry_run", is_flag=True, help="list, change nothing")
def runs_gc(stale_after: float, experiment: tuple[str, ...], dry_run: bool) -> None:
    """Mark RUNNING runs whose process is gone (stale heartbeat) FAILED, saying why."""
    from seismic_ml.tracking.lost_runs import fail_lost_run, find_lost_runs
    from seismic_ml.tracking.store import existing_experiment_ids, require_store

    require_store()
    ids = existing_experiment_ids(experiment) if experiment else None
    lost = find_lost_runs(stale_after, ids)
    for run in lost:
        if not dry_run:
            fail_lost_run(run, stale_after)
        verb = "is lost" if dry_run else "marked FAILED"
        click.echo(f"{run.run_id} ({run.run_name}): no heartbeat for {run.silent_s:.0f} s, {verb}")
    click.echo(f"{len(lost)} lost run(s) {'found' if dry_run else 'marked FAILED'}")


@cli.group()
def data() -> None:
    """Build and inspect datasets."""


@data.command("synth")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="output directory")
@click.option("--n-traces", "--n_traces", "n_traces", type=int, default=2000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--mixed-rates",
    is_flag=True,
    help="the variant shaped like ETHZ: 100/200/50 Hz and unset rates, 60 and 90 s traces, "
    "Pg/P1/Sg/S1 picks at each trace's rate, some S picks and magnitudes missing",
)
def data_synth(out: Path, n_traces: int, seed: int, mixed_rates: bool) -> None:
    """Write the physics-based synthetic dataset in seisbench's format."""
    from seismic_ml.data.synthetic import write_synthetic

    if out.exists() and not out.is_dir():
        raise SeismicMLError(f"--out {out} is a file: give a folder to write the dataset into")
    if out.exists() and any(out.iterdir()):
        raise SeismicMLError(f"{out} exists and is not empty: refusing to overwrite it")
    try:
        write_synthetic(out, n_traces=n_traces, seed=seed, mixed=mixed_rates)
    except OSError as exc:
        raise SeismicMLError(f"cannot write the dataset to {out}: {first_line(exc)}") from exc
    kind = " (mixed sampling rates)" if mixed_rates else ""
    click.echo(f"wrote {n_traces} traces{kind} to {out}")


@data.command("inspect")
@click.option("--dataset", default="synthetic", show_default=True, help="dataset to inspect")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("outputs"),
    show_default=True,
    help="folder for the example-window figure",
)
def data_inspect(dataset: str, out: Path) -> None:
    """Traces per split, magnitude and distance ranges, pick coverage, problems, example windows.

    Exit status: 0 no problems found; 3 the problem table lists some (bad traces that training
    leaves out, or columns it refuses); 1 the dataset cannot be read at all (one line).
    """
    from seismic_ml.data.dataset_report import format_problems, inspect_dataset

    inspection = inspect_dataset(dataset, out)
    click.echo(inspection.summary)
    click.echo(format_problems(inspection.problems))
    click.echo(f"figure: {inspection.figure}" if inspection.figure else inspection.note)
    if inspection.problems:
        click.get_current_context().exit(EXIT_PROBLEMS_FOUND)


def main() -> None:
    """Console-script entry point: Ctrl-C exits 130 and SIGTERM 143, wherever they arrive."""
    with interrupts.signals_raise():
        try:
            cli(prog_name="seismic-ml")
        except SystemExit as exc:
            signum = interrupts.received()
            if signum is not None and exc.code != 0:
                raise SystemExit(128 + signum) from None
            raise


if __name__ == "__main__":
    sys.exit(main())
