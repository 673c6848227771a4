"""evaluate(trained, settings, recorder): score a trained model on a split, beside a classical
baseline, and hand what it scored to the recorder it is given (memory when none).

The model comes loaded (`seismic_ml.load_model`, or `tracking.evaluation_run.evaluate_run`,
which also records the evaluation as an MLflow run in the training run's experiment); its
config says the dataset unless the settings name another. An evaluation of part of a split
(--max-traces) says so: tag and param `eval.subset` ("100 of 400 traces"), and the registry
version tags it proposes are then only `eval_subset/*`, never the headline ones.

Pickers are scored at the fixed threshold and at per-phase thresholds tuned on a dev split, as
seisbench's pick benchmark does: the model's own (tuned in training), else tuned here on the
dev split of the evaluated dataset.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import seisbench.data as sbd

from seismic_ml import progress
from seismic_ml.config import RunConfig
from seismic_ml.data.quality import screen
from seismic_ml.data.registry import canonical_name, get_split, load_dataset
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.evaluation import metrics
from seismic_ml.evaluation.inference import WINDOW_SEED, Scored
from seismic_ml.evaluation.recorder import (
    EvalRecorder,
    EvalRecording,
    MemoryEvalRecorder,
    ScoredSplit,
)
from seismic_ml.evaluation.scoring_magnitude import score_magnitude
from seismic_ml.evaluation.scoring_phase import dev_thresholds, score_phase
from seismic_ml.trained import TrainedModel

DEFAULT_BATCH_SIZE = 64
EVALUATED_RUN_TAG = "seismic_ml.evaluated_run_id"
EVALUATED_MODEL_TAG = "seismic_ml.evaluated_model_uri"
SUBSET_KEY = "eval.subset"  # tag and param of an evaluation that scored part of its split
SUBSET_VERSION_PREFIX = "eval_subset/"  # a version's tags from such an evaluation
HEADLINE = {
    "magnitude": ("mae", "rmse", "bias", "r2"),
    "phase": ("p_residual_mae_s", "s_residual_mae_s", "p_f1_0.5s", "s_f1_0.5s"),
}


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
    threshold: float | None = None  # pickers: the fixed threshold
    tuned_from: str = ""  # pickers: where the tuned thresholds came from
    subset: str = ""  # "100 of 400 traces" when part of the split was scored
    version_tags: dict[str, str] = field(default_factory=dict)  # for a registry version


@dataclass
class EvalSettings:
    """How to score: which data ("": the model's), how many traces (0: all), batch size,
    the pickers' fixed threshold, figures or not."""

    dataset: str = ""
    split: str = "test"
    max_traces: int = 0
    batch_size: int = DEFAULT_BATCH_SIZE
    threshold: float = metrics.DEFAULT_THRESHOLD
    plot: bool = False
    tuned: dict[str, float] = field(default_factory=dict)  # per-phase tuned thresholds
    tuned_from: str = ""
    n_traces: int = 0  # traces of the split chosen for scoring (before screening)
    n_split: int = 0  # traces in the whole split

    @property
    def subset(self) -> str:
        """`100 of 400 traces` when only part of the split is scored, else ""."""
        if self.n_traces >= self.n_split:
            return ""
        return f"{self.n_traces} of {self.n_split} traces"


def evaluate(
    trained: TrainedModel, settings: EvalSettings, recorder: EvalRecorder | None = None
) -> EvalResult:
    """Score a trained model on a split; the recorder (memory when none) records it."""
    recorder = MemoryEvalRecorder() if recorder is None else recorder
    settings.dataset = canonical_name(settings.dataset or trained.config.data.dataset)
    # unreadable or unusable data fails here, before any record exists
    data, screening = screen(_chosen_split(settings), settings.split)
    if trained.task == "phase":
        settings.tuned, settings.tuned_from = tuned_thresholds(trained, settings)
    excluded = {k.replace("data.", "eval."): v for k, v in screening.to_params().items()}
    params = {**_params(trained, settings), **excluded}
    scored_split = ScoredSplit(data.metadata, settings.dataset, str(data.path), settings.split)
    with recorder.open(_tags(trained, settings), params, scored_split) as recording:
        scored, artifacts = _score_and_record(trained, settings, data, recording)
    registered = trained.name and trained.version is not None
    tags = version_tags(trained.task, scored.metrics, settings, recording.run_id)
    info = (recording.run_id, trained.run_id, trained.uri, trained.task, trained.model_type)
    return EvalResult(
        *info,
        scored.metrics,
        scored.predictions,
        artifacts,
        settings.threshold if trained.task == "phase" else None,
        settings.tuned_from,
        settings.subset,
        tags if registered else {},
    )


def _chosen_split(settings: EvalSettings) -> sbd.WaveformDataset:
    """The split's traces to score (at most max_traces), counting the whole split's."""
    dataset = load_dataset(settings.dataset)
    chosen = get_split(dataset, settings.split, settings.max_traces)
    whole = get_split(dataset, settings.split) if settings.max_traces else chosen
    settings.n_traces, settings.n_split = len(chosen), len(whole)
    return chosen


def tuned_thresholds(trained: TrainedModel, settings: EvalSettings) -> tuple[dict[str, float], str]:
    """The model's tuned pick thresholds, else tuned on the dev split (said in one line)."""
    if trained.thresholds:
        return dict(trained.thresholds), "model"
    dev = _dev_split(settings)
    if dev is None:
        return {}, "none"
    tuned = dev_thresholds(trained.module, dev, trained.config, settings.batch_size)
    found = {p: t.threshold for p, t in tuned.items() if math.isfinite(t.threshold)}
    progress.note(
        f"the model has no tuned pick thresholds: tuned them on the dev split of "
        f"{settings.dataset} ({len(dev)} traces): {format_thresholds(found) or 'none (no hit)'}"
    )
    return found, "dev"


def _dev_split(settings: EvalSettings) -> sbd.WaveformDataset | None:
    """The screened dev split of the evaluated dataset; None (said in one line) if unusable."""
    try:
        split = get_split(load_dataset(settings.dataset), "dev", settings.max_traces)
        return screen(split, "dev")[0]
    except SeismicMLError as exc:
        progress.note(
            f"the model has no tuned pick thresholds and the dev split of {settings.dataset} "
            f"is unusable ({first_line(exc)}): scored at the fixed threshold only"
        )
        return None


def format_thresholds(thresholds: dict[str, float]) -> str:
    """`P 0.412, S 0.27`."""
    return ", ".join(f"{phase} {value:.3g}" for phase, value in thresholds.items())


def _score_and_record(
    trained: TrainedModel,
    settings: EvalSettings,
    data: sbd.WaveformDataset,
    recording: EvalRecording,
) -> tuple[Scored, list[str]]:
    """Score on the split; metrics, tables and figures go to the recording."""
    part = f" (a subset: {settings.subset} of the split)" if settings.subset else ""
    progress.note(
        f"evaluating {trained.model_type} (run {trained.run_id}) on {len(data)} traces of "
        f"{settings.dataset} [{settings.split}]{part}"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        plot_dir = Path(tmp) / "plots" if settings.plot else None
        model, cfg, size = trained.module, trained.config, settings.batch_size
        if trained.task == "phase":
            fixed, tuned = settings.threshold, settings.tuned
            scored = score_phase(model, data, cfg, size, fixed, plot_dir, tuned)
        else:
            scored = score_magnitude(model, data, cfg, size, plot_dir)
        progress.note(
            f"scored {len(scored.predictions)} windows in {time.perf_counter() - started:.1f} s"
        )
        names = _write_outputs(scored, Path(tmp))
        recording.log_scores(scored.metrics, Path(tmp))
        return scored, names


def _tags(trained: TrainedModel, settings: EvalSettings) -> dict[str, str]:
    """Tags of the evaluation run: task, model, dataset and what was evaluated."""
    tags = {
        "task": trained.task,
        "model_type": trained.model_type,
        "dataset": settings.dataset,
        EVALUATED_RUN_TAG: trained.run_id,
        EVALUATED_MODEL_TAG: trained.uri,
        "split": settings.split,
        "seismic_ml.run_kind": "evaluation",
    }
    return {**tags, SUBSET_KEY: settings.subset} if settings.subset else tags


def _params(trained: TrainedModel, settings: EvalSettings) -> dict[str, str]:
    """The evaluated model's options and the evaluation's settings."""
    params = {
        **_model_params(trained.config),
        "eval.run_id": trained.run_id,
        "eval.model_uri": trained.uri,
        "eval.dataset": settings.dataset,
        "eval.split": settings.split,
        "eval.max_traces": str(settings.max_traces),
        "eval.window_seed": str(WINDOW_SEED),
        "eval.batch_size": str(settings.batch_size),
    }
    if settings.subset:
        params[SUBSET_KEY] = settings.subset
    if trained.task == "phase":
        params["eval.threshold"] = str(settings.threshold)
        params["eval.tuned_thresholds_from"] = settings.tuned_from
    return params


def _model_params(cfg: RunConfig) -> dict[str, str]:
    """The evaluated model's type and options, so evaluations compare by them in the UI."""
    return {k: v for k, v in cfg.to_params().items() if k == "task" or k.startswith("model.")}


def version_tags(
    task: str, scores: dict[str, float], settings: EvalSettings, eval_run_id: str
) -> dict[str, str]:
    """A whole split's headline tags; for a subset only `eval_subset/*`, saying what it scored."""
    if not settings.subset:
        return headline_tags(task, scores, settings, eval_run_id)
    scored = f"{settings.subset} of {settings.dataset} [{settings.split}]"
    return {
        f"{SUBSET_VERSION_PREFIX}run_id": eval_run_id,
        f"{SUBSET_VERSION_PREFIX}scored": scored,
    }


def headline_tags(
    task: str, scores: dict[str, float], settings: EvalSettings, eval_run_id: str
) -> dict[str, str]:
    """The few metrics a registry page compares versions by (`<split>/<metric>`), and their run."""
    tags = {"eval/dataset": settings.dataset, "eval/run_id": eval_run_id}
    for name in HEADLINE[task]:
        value = scores.get(f"test/{name}")
        if value is not None and math.isfinite(value):
            tags[f"{settings.split}/{name}"] = f"{value:.4g}"
    return tags


def _write_outputs(scored: Scored, folder: Path) -> list[str]:
    """predictions.csv, extra tables and metrics.json into folder (beside plots/); their names."""
    scored.predictions.to_csv(folder / "predictions.csv", index=False)
    for name, table in scored.tables.items():
        table.to_csv(folder / name, index=False)
    finite = {k: (v if math.isfinite(v) else None) for k, v in scored.metrics.items()}
    (folder / "metrics.json").write_text(json.dumps(finite, indent=2))
    names = ["predictions.csv", *scored.tables, "metrics.json"]
    return names + [f"plots/{path.name}" for path in scored.figures]
