"""The study's results in its parent run: best value and params, trials.csv, figures.

The report is rebuilt from the study's storage, read fresh when it is written: every worker
writes it at its end (the last one to finish writes last), and `seismic-ml tune-report`
rebuilds it on demand.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from seismic_ml.errors import first_line
from seismic_ml.training.train import TrainResult
from seismic_ml.tuning.recorder import StudyRecorder
from seismic_ml.tuning.trials import RUN_ID_ATTR

log = logging.getLogger(__name__)
ARTIFACT_DIR = "tuning"
# A report is written again when a trial ended while it was written (another worker's).
REBUILD_TRIES = 3


@dataclass
class TuneResult:
    """The study's state after this worker: counts, the best trial and its runs."""

    study_name: str
    parent_run_id: str
    counts: dict[str, int]
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_trial_number: int | None = None
    best_run_id: str | None = None
    retrain: TrainResult | None = None


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None before any trial completed."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value) if complete else None


def summarize(study: optuna.Study, parent: str) -> TuneResult:
    """Counts per state and the best trial, over every worker's trials."""
    counts = dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))
    result = TuneResult(study.study_name, parent, counts)
    best = best_trial(study)
    if best is not None:
        result.best_value, result.best_params = best.value, dict(best.params)
        result.best_trial_number = best.number
        result.best_run_id = best.user_attrs.get(RUN_ID_ATTR)
    return result


def log_results(study: optuna.Study, parent: str, recorder: StudyRecorder) -> None:
    """Best value and params, trial counts and the analysis artifacts, into the parent run."""
    result = summarize(study, parent)
    step = sum(result.counts.values())
    metrics = {
        f"n_trials/{s.lower()}": result.counts.get(s, 0) for s in ("COMPLETE", "PRUNED", "FAIL")
    }
    metrics["n_trials/total"] = step
    tags = {}
    if result.best_value is not None:
        metrics["best/value"] = result.best_value
        metrics["best/trial_number"] = result.best_trial_number
        tags = {f"best.{k}": str(v) for k, v in result.best_params.items()}
        tags["best.run_id"] = result.best_run_id or ""
    with tempfile.TemporaryDirectory() as tmp:
        write_artifacts(study, result, Path(tmp), recorder)
        recorder.log_report(parent, metrics, step, tags, Path(tmp), ARTIFACT_DIR)


def trial_states(study: optuna.Study) -> list[tuple[int, str]]:
    """Every trial's number and state, as the storage has them now."""
    return [(t.number, t.state.name) for t in study.get_trials(deepcopy=False)]


def rebuild_report(
    storage: str | optuna.storages.BaseStorage,
    study_name: str,
    parent: str,
    recorder: StudyRecorder,
) -> TuneResult:
    """The parent run's report rebuilt from the storage as it is now: the study is loaded
    afresh, the report written, then the storage read again; when a trial ended meanwhile (in
    another worker) it is written again, so the last writer never leaves an older state."""
    for _ in range(REBUILD_TRIES):
        study = optuna.load_study(study_name=study_name, storage=storage)
        before = trial_states(study)
        log_results(study, parent, recorder)
        if trial_states(optuna.load_study(study_name=study_name, storage=storage)) == before:
            break
    return summarize(study, parent)


def write_artifacts(
    study: optuna.Study, result: TuneResult, folder: Path, recorder: StudyRecorder
) -> None:
    """trials.csv, best_params.json, Optuna's figures and analysis.png into folder."""
    trials_table(study).to_csv(folder / "trials.csv", index=False)
    best = {
        "value": result.best_value,
        "params": result.best_params,
        "trial_number": result.best_trial_number,
        "run_id": result.best_run_id,
        "counts": result.counts,
    }
    (folder / "best_params.json").write_text(json.dumps(best, indent=2, default=str))
    plot_optuna_figures(study, folder)
    curves = functools.partial(recorder.metric_history, result.best_run_id or "")
    plot_analysis(study, result.best_run_id, folder / "analysis.png", curves)


def trials_table(study: optuna.Study) -> Any:
    """Optuna's trials dataframe plus the last epoch each trial reported."""
    attrs = ("number", "value", "state", "datetime_start", "duration", "params", "user_attrs")
    frame = study.trials_dataframe(attrs=attrs)
    if not frame.empty:
        frame["last_epoch"] = [t.last_step for t in study.get_trials(deepcopy=False)]
    return frame


# Optuna's own figures (optuna.visualization.matplotlib), each its own file.
OPTUNA_FIGURES = {
    "optimization_history.png": "plot_optimization_history",
    "intermediate_values.png": "plot_intermediate_values",
    "param_importances.png": "plot_param_importances",
}


def plot_optuna_figures(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's optimisation history, intermediate values (what pruning saw) and fANOVA
    importances (two or more complete trials); a figure Optuna cannot draw yet is left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    written = []
    for name, function in OPTUNA_FIGURES.items():
        if function == "plot_param_importances" and n_complete < 2:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental API; "no trials" notes
            try:
                axes = getattr(optuna_plots, function)(study)
            except Exception as exc:  # a figure must not fail the study
                log.warning("tuning figure %s not drawn: %s", name, first_line(exc))
                continue
        figure = np.ravel(axes)[0].figure
        figure.savefig(folder / name, dpi=90, bbox_inches="tight")
        plt.close(figure)
        written.append(folder / name)
    return written


def plot_analysis(
    study: optuna.Study,
    best_run_id: str | None,
    path: Path,
    curves: Callable[[str], pd.DataFrame] | None = None,
) -> Path:
    """What Optuna does not draw: learning rate of the top trials, the best trial's curves
    (curves(metric): its history as step and value columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    _plot_top_learning_rates(axes[0], study)
    _plot_best_curve(axes[1], best_run_id, curves)
    fig.suptitle(f"study {study.study_name}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_top_learning_rates(ax: Any, study: optuna.Study, top: int = 10) -> None:
    """Learning rate against val/loss for the best complete trials."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.value)[:top]
    ranked = [t for t in ranked if "learning_rate" in t.params]
    ax.set(title=f"learning rate of the top {top} trials")
    if not ranked:
        _note(ax, "no complete trial sampled learning_rate")
        return
    rates = [t.params["learning_rate"] for t in ranked]
    ax.scatter(rates, [t.value for t in ranked])
    for t, rate in zip(ranked, rates):
        ax.annotate(str(t.number), (rate, t.value), fontsize=8)
    ax.set(xscale="log", xlabel="learning_rate", ylabel="best val/loss")


def _plot_best_curve(
    ax: Any, best_run_id: str | None, curves: Callable[[str], pd.DataFrame] | None
) -> None:
    """The best trial's per-epoch curves, read back from its child run."""
    ax.set(title="best trial", xlabel="epoch", ylabel="loss")
    if best_run_id is None or curves is None:
        _note(ax, "no complete trial yet" if best_run_id is None else "no record to read")
        return
    drawn = False
    for key in ("train/epoch_loss", "val/loss"):
        frame = curves(key)
        if not frame.empty:
            ax.plot(frame["step"], frame["value"], marker="o", label=key)
            drawn = True
    _legend_or_note(ax, drawn, "the best run logged no epochs")


def _legend_or_note(ax: Any, drawn: bool, note: str) -> None:
    if drawn:
        ax.legend()
    else:
        _note(ax, note)


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
