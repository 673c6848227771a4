"""Phase scoring: model and STA/LTA picks on fixed windows, per-window table, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seisbench.data as sbd
import torch
from torch import nn

from seismic_ml import pick_scores
from seismic_ml.config import RunConfig
from seismic_ml.data.batches import PhaseBatches
from seismic_ml.data.registry import SAMPLING_RATE
from seismic_ml.evaluation import baseline_cache, baselines, metrics, plots
from seismic_ml.evaluation.inference import (
    WINDOW_SEED,
    Scored,
    batches,
    forward,
    identity_columns,
    open_split,
    ready,
)

N_EXAMPLES = 4
BASELINE_COLUMNS = ("baseline_p_sample", "baseline_score")


def phase_windows(model: nn.Module, data: sbd.WaveformDataset, cfg: RunConfig) -> PhaseBatches:
    """The deterministic phase windows, as in validation, at seeded starts; unlabelled (the
    scores compare picks with the onsets themselves)."""
    return PhaseBatches(
        open_split(data, cfg),
        data,
        model.in_samples,
        model.labels,
        cfg.data.label_sigma,
        getattr(model, "norm", "std"),
        window_seed=WINDOW_SEED,
        labelled=False,
    )


def first_onsets(windows: PhaseBatches, rows: list[int]) -> np.ndarray:
    """(B, 2): each window's earliest labelled P and S sample inside it (NaN: none inside)."""
    relative = windows.picks[rows] - windows.fixed_starts[rows, None]
    inside = np.where((relative >= 0) & (relative < windows.windowlen), relative, np.inf)
    phases = np.array(windows.phases)
    onsets = [inside[:, phases == p].min(axis=1, initial=np.inf) for p in "PS"]
    return np.where(np.isfinite(onsets), onsets, np.nan).T


def score_phase(
    model: nn.Module,
    data: sbd.WaveformDataset,
    cfg: RunConfig,
    batch_size: int,
    threshold: float,
    plot_dir: Path | None,
    tuned: dict[str, float] | None = None,
) -> Scored:
    """Model and STA/LTA pick metrics on every window (also at tuned per-phase thresholds, when
    given); per-window table; optional figures."""
    model = ready(model)
    windows, table = pick_table(model, data, cfg, batch_size)
    phases = "".join(p for p in "PS" if p in model.labels)
    found = metrics.phase_metrics(table, SAMPLING_RATE, threshold, phases)
    found.update(metrics.tuned_pick_metrics(table, SAMPLING_RATE, tuned or {}))
    result = {f"test/{k}": v for k, v in found.items()}
    result.update({f"baseline/{k}": v for k, v in _sta_lta_metrics(table).items()})
    scored = Scored(result, table)
    if plot_dir is not None:
        scored.figures = _phase_figures(model, windows, table, phases, plot_dir)
    return scored


def dev_thresholds(
    model: nn.Module, data: sbd.WaveformDataset, cfg: RunConfig, batch_size: int
) -> dict[str, pick_scores.TunedThreshold]:
    """Per phase, the F1-maximising pick threshold on the fixed windows of (a dev) split."""
    model = ready(model)
    _, table = pick_table(model, data, cfg, batch_size, baseline=False)
    return metrics.tune_thresholds(
        table, SAMPLING_RATE, "".join(p for p in "PS" if p in model.labels)
    )


def pick_table(
    model: nn.Module,
    data: sbd.WaveformDataset,
    cfg: RunConfig,
    batch_size: int,
    baseline: bool = True,
) -> tuple[PhaseBatches, pd.DataFrame]:
    """The fixed windows of a split and their per-window table (onsets, picks, STA/LTA: from
    the baseline cache when these windows were scored before, else computed and kept)."""
    windows = phase_windows(model, data, cfg)
    identity = baseline_cache.baseline_identity(
        data, task="phase", windowlen=windows.windowlen, norm=windows.norm,
        window_seed=WINDOW_SEED, sta_lta=baselines.StaLtaSettings(),
    )  # fmt: skip
    kept = baseline_cache.load(identity, BASELINE_COLUMNS, len(windows)) if baseline else None
    compute = baseline and kept is None
    frames = [
        _phase_batch(model, batch, first_onsets(windows, rows), compute)
        for rows, batch in batches(windows, batch_size)
    ]
    table = pd.concat(frames, ignore_index=True)
    if compute:
        baseline_cache.save(identity, {c: table[c].to_numpy() for c in BASELINE_COLUMNS})
    for column, values in (kept or {}).items():
        table[column] = values
    table.insert(0, "window_start_sample", windows.fixed_starts)
    return windows, pd.concat([identity_columns(data.metadata), table], axis=1)


def _phase_batch(
    model: nn.Module, batch: dict[str, torch.Tensor], onsets: np.ndarray, baseline: bool = True
) -> pd.DataFrame:
    """Per window: labelled onsets, predicted onsets and peak probabilities, STA/LTA pick."""
    probs = forward(model, batch["X"]).numpy()
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
    if baseline:
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
    model: nn.Module, windows: PhaseBatches, table: pd.DataFrame, phases: str, plot_dir: Path
) -> list[Path]:
    """Residual histograms (model and STA/LTA) and a few example windows with their curves."""
    residuals = {
        f"model {p}": metrics.onset_residuals(
            table[f"true_{p.lower()}_sample"], table[f"pred_{p.lower()}_sample"], SAMPLING_RATE
        )
        for p in phases
    }
    residuals["STA/LTA P"] = metrics.onset_residuals(
        table["true_p_sample"], table["baseline_p_sample"], SAMPLING_RATE
    )
    examples = [_example(model, windows, table, i) for i in _example_indices(table)]
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
    model: nn.Module, windows: PhaseBatches, table: pd.DataFrame, index: int
) -> plots.ExampleWindow:
    """One window, its probability curves and labelled onsets, for the examples figure."""
    x = windows[[index]]["X"]
    probs = forward(model, x).numpy()[0]
    onsets = dict(zip("PS", first_onsets(windows, [index])[0], strict=True))
    return plots.ExampleWindow(
        table["trace_name"].iloc[index], x[0].numpy(), probs, model.labels, onsets
    )
