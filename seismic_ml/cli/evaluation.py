"""The eval-phase, eval-mag and predict commands (registered on the CLI group in cli/main.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from seismic_ml.cli.click_options import (
    FriendlyCommand,
    add_options,
    in_section,
    model_field_options,
)
from seismic_ml.data import SPLITS
from seismic_ml.models.registry import model_types

__all__ = ["eval_mag", "eval_phase", "predict"]


def _model_check_options(task: str) -> tuple[set[str], list[click.Parameter]]:
    """--model-type and every model option of the task, only to check them against the run."""
    names = model_types(task)
    merged = model_field_options(names)
    options = [
        click.Option(
            ["--model-type", "--model_type", "model_type"],
            type=click.Choice(names),
            help="the run's model type",
        )
    ]
    options += [opt.to_click(show_default=False) for opt in merged.values()]
    heading = "Checks: the model and its options come from the run; given ones must match it"
    return {"model_type", *merged}, in_section(heading, options)


def _source_options() -> list[click.Parameter]:
    return in_section(
        "Model to evaluate",
        [
            click.Option(
                ["--run-id", "--run_id", "run_id"], help="training run whose model to evaluate"
            ),
            click.Option(
                ["--model-uri", "--model_uri", "model_uri"],
                help="runs:/ID/model, models:/NAME/VERSION or models:/NAME@ALIAS",
            ),
        ],
    )


def _data_options() -> list[click.Parameter]:
    return in_section(
        "Data",
        [
            click.Option(["--dataset"], help="dataset to score on (default: the run's own)"),
            click.Option(["--split"], type=click.Choice(SPLITS), default="test", show_default=True),
            click.Option(
                ["--max-traces", "--max_traces", "max_traces"],
                type=click.IntRange(min=0),
                default=0,
                help="score at most this many traces of the split (default: 0, all); a subset "
                "is tagged eval.subset and leaves a registered version's test/* tags alone",
            ),
        ],
    )


def _scoring_options(task: str) -> list[click.Parameter]:
    options = [
        click.Option(
            ["--batch-size", "--batch_size", "batch_size"],
            type=click.IntRange(min=1),
            default=64,
            show_default=True,
            help="windows per forward pass",
        )
    ]
    if task == "phase":
        options.append(
            click.Option(
                ["--threshold"],
                type=click.FloatRange(0, 1),
                default=0.3,
                show_default=True,
                help="fixed pick probability threshold for precision, recall and F1 (scores at "
                "per-phase thresholds tuned on the dev split are reported beside them)",
            )
        )
    return in_section("Scoring", options)


def _output_options() -> list[click.Parameter]:
    return in_section(
        "Output",
        [
            click.Option(
                ["--plot"],
                type=click.BOOL,
                is_flag=False,
                flag_value=True,
                default=False,
                help="log figures; --plot alone or --plot true/false (default: false)",
            ),
            click.Option(["--experiment"], help="MLflow experiment (default: the training run's)"),
        ],
    )


def make_eval_command(task: str) -> click.Command:
    """eval-phase / eval-mag: config, model and data resolved from the training run."""
    check_names, check_options = _model_check_options(task)
    sections = [_source_options(), _data_options(), _scoring_options(task), _output_options()]

    @add_options([*(opt for section in sections for opt in section), *check_options])
    def command(**given: Any) -> None:
        from seismic_ml.tracking.evaluation_run import evaluate_run
        from seismic_ml.tracking.store import require_store

        require_store()

        overrides = {k: given.pop(k) for k in check_names}
        result = evaluate_run(task, overrides=overrides, **given)
        _report(result)

    command.__doc__ = (
        f"Evaluate a trained {task} model on fixed windows, beside a classical baseline; "
        "the evaluation is an MLflow run in the training run's experiment."
    )
    name = "eval-phase" if task == "phase" else "eval-mag"
    return click.command(name, cls=FriendlyCommand)(command)


def _report(result: Any) -> None:
    """The evaluation run, what it scored, and each metric beside the baseline's (and, for
    pickers, beside its value at the tuned thresholds)."""
    click.echo(f"evaluation run: {result.run_id}")
    click.echo(f"model: {result.model_uri} ({result.model_type}, run {result.evaluated_run_id})")
    if result.subset:
        click.echo(f"subset: {result.subset} of the split scored (tag eval.subset)")
    if result.threshold is not None:
        click.echo(_thresholds_line(result))
    rows = _report_rows(result)
    tuned = any(row[2] is not None for row in rows)
    click.echo(
        f"{'metric':<26}{'model':>10}" + (f"{'tuned':>10}" if tuned else "") + f"{'baseline':>10}"
    )
    for name, model, at_tuned, baseline in rows:
        middle = f"{_cell(at_tuned):>10}" if tuned else ""
        click.echo(f"{name:<26}{_cell(model):>10}{middle}{_cell(baseline):>10}")
    click.echo("artifacts: " + ", ".join(result.artifacts))


TUNED_FROM = {
    "model": "the model's, tuned on its dev split in training",
    "dev": "tuned here on the dev split",
    "none": "none: no dev split to tune them on",
}


def _thresholds_line(result: Any) -> str:
    """`pick thresholds: fixed 0.3; tuned P 0.412, S 0.27 (the model's, ...)`."""
    tuned = {
        k.split("/")[1][0].upper(): v
        for k, v in result.metrics.items()
        if k.startswith("test/") and k.endswith("_threshold_tuned")
    }
    shown = ", ".join(f"{phase} {value:.3g}" for phase, value in sorted(tuned.items()))
    where = TUNED_FROM.get(result.tuned_from, result.tuned_from)
    return f"pick thresholds: fixed {result.threshold:g}; tuned {shown or '-'} ({where})"


def _report_rows(result: Any) -> list[tuple[str, Any, Any, Any]]:
    """(metric, model, model at the tuned thresholds, baseline) per metric name."""
    scores = dict(result.metrics)
    for key in [k for k in scores if k.endswith("_threshold_tuned")]:
        scores[key.removesuffix("_tuned")] = result.threshold  # the fixed one, for the row
    names = sorted({k.split("/", 1)[1] for k in scores if "_tuned" not in k})
    return [
        (
            name,
            scores.get(f"test/{name}"),
            scores.get(f"test/{_tuned_name(name)}"),
            scores.get(f"baseline/{name}"),
        )
        for name in names
    ]


def _tuned_name(name: str) -> str:
    """The metric at the tuned thresholds that name is at the fixed one (p_f1_0.5s ->
    p_f1_tuned_0.5s, p_threshold -> p_threshold_tuned); "" when there is none."""
    if name.endswith("_threshold"):
        return f"{name}_tuned"
    suffix = "_0.5s"  # metrics.TUNING_TOLERANCE_S (not imported: the CLI starts light)
    return name.removesuffix(suffix) + "_tuned" + suffix if name.endswith(suffix) else ""


def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.3f}"


eval_phase = make_eval_command("phase")
eval_mag = make_eval_command("magnitude")


def _predict_model_options() -> list[click.Parameter]:
    return in_section(
        "Model",
        [
            click.Option(
                ["--model-uri", "--model_uri", "model_uri"],
                required=True,
                help="phase or magnitude model",
            ),
            click.Option(
                ["--picker-uri", "--picker_uri", "picker_uri"],
                help="phase model that picks P for a magnitude model",
            ),
            click.Option(
                ["--p-time", "--p_time", "p_times"],
                multiple=True,
                help="P onset (UTC) for a magnitude model: TIME, or STATION=TIME; repeatable",
            ),
            click.Option(
                ["--threshold"],
                type=click.FloatRange(0, 1),
                default=None,
                help="pick probability threshold for every phase (default: the model's "
                "per-phase thresholds tuned on its dev split, else 0.3)",
            ),
        ],
    )


def _predict_output_options() -> list[click.Parameter]:
    return in_section(
        "Output",
        [
            click.Option(
                ["--format", "fmt"],
                type=click.Choice(["csv", "json", "quakeml"]),
                default="csv",
                show_default=True,
                help="csv or json tables, or QuakeML (picks grouped into events, magnitudes "
                "per station and for the event)",
            ),
            click.Option(
                ["--out"], type=click.Path(path_type=Path), help="output file (default: stdout)"
            ),
            click.Option(
                ["--plot", "--figure", "figure"],
                type=click.Path(path_type=Path),
                help="PNG of traces, probabilities and picks (phase models; default: beside --out)",
            ),
        ],
    )


@click.command("predict", cls=FriendlyCommand)
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@add_options([*_predict_model_options(), *_predict_output_options()])
def predict(
    files: tuple[Path, ...],
    model_uri: str,
    picker_uri: str | None,
    p_times: tuple[str, ...],
    threshold: float | None,
    fmt: str,
    out: Path | None,
    figure: Path | None,
) -> None:
    """Picks or per-station magnitudes from a logged model, for any obspy-readable FILE."""
    from seismic_ml.evaluation import predict as predicting
    from seismic_ml.tracking.loader import load_model
    from seismic_ml.tracking.store import require_store

    require_store()  # a read-only command never creates a store

    curves = bool(figure or out)
    trained = load_model(model_uri)
    picker = load_model(picker_uri) if picker_uri else None
    prediction = predicting.predict(trained, files, picker, p_times, threshold, curves)
    for note in prediction.notes:
        click.echo(f"note: {note}", err=True)
    if out is None:
        click.echo(predicting.format_prediction(prediction, fmt), nl=False)
    else:
        predicting.write_prediction(prediction, fmt, out)
        click.echo(f"wrote {predicting.output_summary(prediction, fmt)} to {out}", err=True)
    if prediction.annotations is not None:
        from seismic_ml.evaluation.plots import plot_stream_picks

        path = figure or out.with_suffix(".png")
        pages = plot_stream_picks(prediction.stream, prediction.annotations, prediction.table, path)
        click.echo(f"figure: {pages.describe()}", err=True)
