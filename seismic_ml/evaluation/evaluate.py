"""evaluate(): rebuild a training run's model and config, score it on fixed windows, log a run.

Everything comes from the evaluated run: the model (its logged MLflow model), its type and
options (its params), the dataset (unless another is named). The evaluation is itself an MLflow
run in the training run's experiment, so evaluations of several models compare in the UI.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import seisbench.data as sbd
import torch
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from torch import nn
from torch.utils.data import DataLoader, Dataset

from seismic_ml.config import RunConfig
from seismic_ml.data import pipelines
from seismic_ml.data.quality import screen
from seismic_ml.data.registry import SAMPLING_RATE, get_split, load_dataset, pick_columns
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.evaluation import baselines, metrics, plots
from seismic_ml.models.magnitude import split_output
from seismic_ml.options import parse_value
from seismic_ml.tracking import model_io
from seismic_ml.tracking.run import standard_tags, tracked_run
from seismic_ml.training.loop import resolve_device

# Every model is scored on the same windows, whatever seed it was trained with.
WINDOW_SEED = 0
DEFAULT_BATCH_SIZE = 64
N_EXAMPLES = 4
EVALUATED_RUN_TAG = "seismic_ml.evaluated_run_id"
EVALUATED_MODEL_TAG = "seismic_ml.evaluated_model_uri"
TASK_COMMANDS = {"phase": "eval-phase", "magnitude": "eval-mag"}
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/]+)|@(?P<alias>[^/]+))?$")


@dataclass
class EvalResult:
    """What an evaluation produced: its run, what it evaluated, metrics, per-trace predictions."""

    run_id: str
    evaluated_run_id: str
    model_uri: str
    task: str
    model_type: str
    metrics: dict[str, float]
    predictions: pd.DataFrame
    artifacts: list[str]


@dataclass
class Scored:
    """A task's scores before logging: prefixed metrics, tables to save, figures written."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)


def evaluate(
    task: str,
    run_id: str | None = None,
    model_uri: str | None = None,
    dataset: str | None = None,
    split: str = "test",
    plot: bool = False,
    overrides: dict[str, Any] | None = None,
    experiment: str | None = None,
    max_traces: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    threshold: float = metrics.DEFAULT_THRESHOLD,
) -> EvalResult:
    """Score a trained model on a split and log the evaluation as an MLflow run."""
    run_id, model_uri = resolve_model(run_id, model_uri)
    cfg = model_io.run_config(run_id)
    check_task(cfg, task, run_id)
    check_overrides(cfg, overrides or {}, run_id)
    model = model_io.load_model(model_uri)
    dataset_name = dataset or cfg.data.dataset
    data, screening = screen(get_split(load_dataset(dataset_name), split, max_traces), split)
    tags = {
        **standard_tags(task, cfg.model_type, dataset_name),
        EVALUATED_RUN_TAG: run_id,
        EVALUATED_MODEL_TAG: model_uri,
        "split": split,
        "seismic_ml.run_kind": "evaluation",
    }
    params = {
        **_model_params(cfg),
        "eval.run_id": run_id,
        "eval.model_uri": model_uri,
        "eval.dataset": dataset_name,
        "eval.split": split,
        "eval.max_traces": str(max_traces),
        "eval.window_seed": str(WINDOW_SEED),
        "eval.batch_size": str(batch_size),
        **({"eval.threshold": str(threshold)} if task == "phase" else {}),
        **{k.replace("data.", "eval."): v for k, v in screening.to_params().items()},
    }
    run_name = f"eval-{cfg.model_type}-{split}"
    with tracked_run(run_name, experiment or experiment_of(run_id), tags=tags) as run:
        mlflow.log_params(params)
        with tempfile.TemporaryDirectory() as tmp:
            plot_dir = Path(tmp) / "plots" if plot else None
            if task == "phase":
                scored = score_phase(model, data, cfg, batch_size, threshold, plot_dir)
            else:
                scored = score_magnitude(model, data, cfg, batch_size, plot_dir)
            mlflow.log_metrics(scored.metrics)
            artifacts = _log_outputs(scored, Path(tmp))
    info = (run.info.run_id, run_id, model_uri, task, cfg.model_type)
    return EvalResult(*info, scored.metrics, scored.predictions, artifacts)


# ---------------------------------------------------------------- resolving the run


def resolve_model(run_id: str | None, model_uri: str | None) -> tuple[str, str]:
    """(training run id, model URI) from either or both; they must agree when both are given."""
    if not run_id and not model_uri:
        raise SeismicMLError("give --run-id (a training run) or --model-uri (runs:/, models:/)")
    if not model_uri:
        return run_id, model_io.run_model_uri(run_id)
    source = source_run_id(model_uri, required=not run_id)
    if run_id and source and source != run_id:
        raise SeismicMLError(
            f"--model-uri {model_uri} was logged by run {source}, not by --run-id {run_id}"
        )
    return run_id or source, model_uri


def source_run_id(model_uri: str, required: bool = True) -> str | None:
    """The training run that logged a model: runs:/ID/..., models:/NAME/VERSION|@ALIAS|m-ID."""
    if model_uri.startswith("runs:/") and model_uri[6:].split("/")[0]:
        return model_uri[6:].split("/")[0]
    match = _MODELS_URI.match(model_uri)
    if match is None:
        if required:
            raise SeismicMLError(
                f"cannot tell which training run logged {model_uri!r}; give --run-id as well"
            )
        return None
    client = MlflowClient()
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(match["name"], match["alias"])
        elif match["version"]:
            version = client.get_model_version(match["name"], _version(client, match))
        else:
            return client.get_logged_model(match["name"]).source_run_id
    except MlflowException as exc:
        where = mlflow.get_tracking_uri()
        raise SeismicMLError(f"{model_uri} not found in {where}: {first_line(exc)}") from exc
    return _version_run(client, version, model_uri)


def _version(client: MlflowClient, match: re.Match) -> str:
    if match["version"] != "latest":
        return match["version"]
    versions = client.search_model_versions(f"name='{match['name']}'")
    if not versions:
        raise SeismicMLError(f"registered model {match['name']!r} has no versions")
    return str(max(int(v.version) for v in versions))


def _version_run(client: MlflowClient, version: Any, model_uri: str) -> str:
    """A model version's run id, or its logged model's source run (MLflow 3 models:/m-...)."""
    if version.run_id:
        return version.run_id
    source = _MODELS_URI.match(version.source or "")
    if source and not source["version"] and not source["alias"]:
        run_id = client.get_logged_model(source["name"]).source_run_id
        if run_id:
            return run_id
    raise SeismicMLError(f"{model_uri} records no training run; give --run-id as well")


def experiment_of(run_id: str) -> str:
    """Name of the experiment holding a run (where its evaluations go)."""
    experiment_id = model_io.get_run(run_id).info.experiment_id
    return MlflowClient().get_experiment(experiment_id).name


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
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(float(a), float(b))
    return a == b


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def _param(name: str) -> str:
    return "model.type" if name == "model_type" else f"model.{name}"


def _model_params(cfg: RunConfig) -> dict[str, str]:
    """The evaluated model's type and options, so evaluations compare by them in the UI."""
    return {k: v for k, v in cfg.to_params().items() if k == "task" or k.startswith("model.")}


# ---------------------------------------------------------------- inference


def _batches(dataset: Dataset, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """The windows in their fixed order, batched."""
    yield from DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


@torch.no_grad()
def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's output for a batch, on the model's device, returned on the CPU."""
    device = next(model.parameters()).device
    return model(x.to(device)).cpu()


def _ready(model: nn.Module) -> nn.Module:
    return model.to(resolve_device("auto")).eval()


# ---------------------------------------------------------------- phase


class OnsetSamples:
    """Puts the window's first P and S onset samples (NaN: none inside) in 'onsets'."""

    def __init__(self, columns: dict[str, str], windowlen: int) -> None:
        self.columns = columns
        self.windowlen = windowlen

    def __call__(self, state_dict: dict) -> None:
        _, meta = state_dict["X"]
        onsets = [self._first(meta, phase) for phase in "PS"]
        state_dict["onsets"] = (np.array(onsets, dtype=np.float64), None)

    def _first(self, meta: dict, phase: str) -> float:
        samples = [_as_float(meta.get(c)) for c, p in self.columns.items() if p == phase]
        inside = [s for s in samples if 0 <= s < self.windowlen]
        return min(inside, default=float("nan"))


def _as_float(value: Any) -> float:
    """A metadata value as a float; missing or unreadable values are NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def phase_generator(model: nn.Module, data: sbd.WaveformDataset, cfg: RunConfig) -> Dataset:
    """The deterministic phase windows (as in validation) plus each window's labelled onsets."""
    generator = pipelines.phase_eval_generator(
        data,
        model.labels,
        model.in_samples,
        cfg.data.label_sigma,
        WINDOW_SEED,
        getattr(model, "norm", "std"),
    )
    generator.add_augmentations([OnsetSamples(pick_columns(data.metadata), model.in_samples)])
    return generator


def score_phase(
    model: nn.Module,
    data: sbd.WaveformDataset,
    cfg: RunConfig,
    batch_size: int,
    threshold: float,
    plot_dir: Path | None,
) -> Scored:
    """Model and STA/LTA pick metrics on every window; per-window table; optional figures."""
    model = _ready(model)
    generator = phase_generator(model, data, cfg)
    frames = [_phase_batch(model, batch) for batch in _batches(generator, batch_size)]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "window_start_sample", generator.metadata["start_sample"].to_numpy())
    table = pd.concat([identity_columns(data.metadata), table], axis=1)
    phases = "".join(p for p in "PS" if p in model.labels)
    found = metrics.phase_metrics(table, SAMPLING_RATE, threshold, phases)
    result = {f"test/{k}": v for k, v in found.items()}
    result.update({f"baseline/{k}": v for k, v in _sta_lta_metrics(table).items()})
    scored = Scored(result, table)
    if plot_dir is not None:
        scored.figures = _phase_figures(model, generator, table, phases, plot_dir)
    return scored


def _phase_batch(model: nn.Module, batch: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Per window: labelled onsets, predicted onsets and peak probabilities, STA/LTA pick."""
    probs = _forward(model, batch["X"]).numpy()
    onsets = batch["onsets"].numpy()
    labels = model.labels
    columns: dict[str, np.ndarray] = {}
    for i, phase in enumerate("PS"):
        key = phase.lower()
        columns[f"true_{key}_sample"] = onsets[:, i]
        if phase in labels:
            curve = probs[:, labels.index(phase)]
            columns[f"pred_{key}_sample"] = curve.argmax(axis=-1).astype(float)
            columns[f"pred_{key}_prob"] = curve.max(axis=-1)
    columns["is_event"] = np.isfinite(onsets).any(axis=1)
    columns["detection_score"] = (1.0 - probs[:, labels.index("N")]).max(axis=-1)
    base_pick, base_score = baselines.sta_lta_picks(batch["X"].numpy(), SAMPLING_RATE)
    columns["baseline_p_sample"] = base_pick
    columns["baseline_score"] = base_score
    return pd.DataFrame(columns)


def _sta_lta_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The STA/LTA picker scored like the model: a trigger is a pick, the peak ratio a score."""
    picked = table["baseline_p_sample"].notna()
    baseline = pd.DataFrame(
        {
            "true_p_sample": table["true_p_sample"],
            "pred_p_sample": table["baseline_p_sample"],
            "pred_p_prob": picked.astype(float),
            "is_event": table["is_event"],
            "detection_score": table["baseline_score"],
        }
    )
    return metrics.phase_metrics(baseline, SAMPLING_RATE, threshold=0.5, phases="P")


def _phase_figures(
    model: nn.Module, generator: Dataset, table: pd.DataFrame, phases: str, plot_dir: Path
) -> list[Path]:
    residuals = {
        f"model {p}": metrics.onset_residuals(
            table[f"true_{p.lower()}_sample"], table[f"pred_{p.lower()}_sample"], SAMPLING_RATE
        )
        for p in phases
    }
    residuals["STA/LTA P"] = metrics.onset_residuals(
        table["true_p_sample"], table["baseline_p_sample"], SAMPLING_RATE
    )
    examples = [_example(model, generator, table, i) for i in _example_indices(table)]
    return [
        plots.plot_pick_residuals(residuals, plot_dir / "pick_residuals.png"),
        plots.plot_examples(examples, SAMPLING_RATE, plot_dir / "example_windows.png"),
    ]


def _example_indices(table: pd.DataFrame) -> list[int]:
    """The first few event windows and the first noise window."""
    events = np.flatnonzero(table["is_event"].to_numpy())[: N_EXAMPLES - 1]
    noise = np.flatnonzero(~table["is_event"].to_numpy())[:1]
    return sorted([*events.tolist(), *noise.tolist()])


def _example(
    model: nn.Module, generator: Dataset, table: pd.DataFrame, index: int
) -> plots.ExampleWindow:
    sample = generator[index]
    x = torch.from_numpy(sample["X"][None])
    probs = _forward(model, x).numpy()[0]
    onsets = dict(zip("PS", sample["onsets"]))
    return plots.ExampleWindow(
        table["trace_name"].iloc[index], sample["X"], probs, model.labels, onsets
    )


# ---------------------------------------------------------------- magnitude


def score_magnitude(
    model: nn.Module,
    data: sbd.WaveformDataset,
    cfg: RunConfig,
    batch_size: int,
    plot_dir: Path | None,
) -> Scored:
    """Per-trace model and ML-baseline metrics, the per-bin table and optional figures."""
    model = _ready(model)
    subset = pipelines.magnitude_subset(data, cfg.data.magnitude_type)
    generator = pipelines.magnitude_eval_generator(subset, model.in_samples, WINDOW_SEED)
    table = _magnitude_table(model, generator, subset.metadata, batch_size)
    sigma = table["pred_sigma"] if "pred_sigma" in table else None
    true = table["true_magnitude"]
    result = {
        f"test/{k}": v
        for k, v in metrics.magnitude_metrics(true, table["pred_magnitude"], sigma).items()
    }
    bins = metrics.magnitude_bin_table(true, table["pred_magnitude"])
    if table["baseline_ml"].notna().any():
        base = metrics.magnitude_metrics(true, table["baseline_ml"])
        result.update({f"baseline/{k}": v for k, v in base.items()})
        base_bins = metrics.magnitude_bin_table(true, table["baseline_ml"])
        bins = bins.merge(base_bins, on=["mag_low", "mag_high"], how="outer", suffixes=("", "_ml"))
    scored = Scored(result, table, {"magnitude_bins.csv": bins})
    if plot_dir is not None:
        scored.figures = [plots.plot_magnitude(table, plot_dir / "magnitude.png")]
    return scored


def _magnitude_table(
    model: nn.Module, generator: Dataset, metadata: pd.DataFrame, batch_size: int
) -> pd.DataFrame:
    """One row per trace in the generator's order: truth, prediction, baseline, distance."""
    distance = baselines.hypocentral_distance_km(metadata)
    pred, sigma, baseline_ml, start = [], [], [], 0
    for batch in _batches(generator, batch_size):
        magnitude, log_sigma = split_output(_forward(model, batch["X"]))
        pred.append(magnitude.numpy())
        sigma.append(None if log_sigma is None else log_sigma.numpy())
        stop = start + len(batch["X"])
        baseline_ml.append(
            baselines.ml_baseline(batch["X"].numpy(), distance[start:stop], SAMPLING_RATE)
        )
        start = stop
    table = _trace_columns(metadata)
    table["pred_magnitude"] = np.concatenate(pred)
    table["residual"] = table["pred_magnitude"] - table["true_magnitude"]
    if sigma[0] is not None:
        table["pred_sigma"] = np.concatenate(sigma)
    table["distance_km"] = distance
    table["baseline_ml"] = np.concatenate(baseline_ml)
    table["baseline_residual"] = table["baseline_ml"] - table["true_magnitude"]
    return table


def identity_columns(metadata: pd.DataFrame) -> pd.DataFrame:
    """Trace name (as the dataset's writer named it), station and SNR of each trace, in order."""
    name = "trace_name_original" if "trace_name_original" in metadata else "trace_name"
    table = pd.DataFrame({"trace_name": metadata[name].to_numpy()})
    for column in ("station_code", "trace_snr_db"):
        if column in metadata.columns:
            table[column] = metadata[column].to_numpy()
    return table


def _trace_columns(metadata: pd.DataFrame) -> pd.DataFrame:
    """Identity and truth columns of the per-trace predictions table."""
    table = identity_columns(metadata)
    table["true_magnitude"] = pd.to_numeric(metadata["source_magnitude"]).to_numpy(dtype=float)
    return table


# ---------------------------------------------------------------- artifacts


def _log_outputs(scored: Scored, folder: Path) -> list[str]:
    """predictions.csv, extra tables, metrics.json and plots/ into the active run."""
    scored.predictions.to_csv(folder / "predictions.csv", index=False)
    for name, table in scored.tables.items():
        table.to_csv(folder / name, index=False)
    finite = {k: (v if math.isfinite(v) else None) for k, v in scored.metrics.items()}
    (folder / "metrics.json").write_text(json.dumps(finite, indent=2))
    mlflow.log_artifacts(str(folder))
    names = ["predictions.csv", *scored.tables, "metrics.json"]
    return names + [f"plots/{path.name}" for path in scored.figures]
