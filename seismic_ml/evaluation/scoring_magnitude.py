"""Magnitude scoring: per-trace model and ML-baseline metrics, per-bin table, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seisbench.data as sbd
from torch import nn

from seismic_ml.config import RunConfig
from seismic_ml.data import pipelines
from seismic_ml.data.batches import MagnitudeBatches
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
from seismic_ml.models.magnitude import split_output


def score_magnitude(
    model: nn.Module,
    data: sbd.WaveformDataset,
    cfg: RunConfig,
    batch_size: int,
    plot_dir: Path | None,
) -> Scored:
    """Per-trace model and ML-baseline metrics, the per-bin table and optional figures."""
    model = ready(model)
    subset = pipelines.magnitude_subset(data, cfg.data.magnitude_type)
    windows = magnitude_windows(model, subset, cfg)
    table = _magnitude_table(model, windows, subset, batch_size)
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


def magnitude_windows(
    model: nn.Module, subset: sbd.WaveformDataset, cfg: RunConfig
) -> MagnitudeBatches:
    """The deterministic magnitude windows, as in validation, at seeded starts."""
    return MagnitudeBatches(
        open_split(subset, cfg), subset, model.in_samples, window_seed=WINDOW_SEED
    )


def _magnitude_table(
    model: nn.Module, windows: MagnitudeBatches, subset: sbd.WaveformDataset, batch_size: int
) -> pd.DataFrame:
    """One row per trace in the windows' order: truth, prediction, baseline (from the baseline
    cache when these windows were scored before, else computed and kept), distance."""
    metadata = subset.metadata
    distance = baselines.hypocentral_distance_km(metadata)
    identity = baseline_cache.baseline_identity(
        subset, task="magnitude", windowlen=windows.windowlen, window_seed=WINDOW_SEED,
        method=baselines.ML_METHOD,
    )  # fmt: skip
    kept = baseline_cache.load(identity, ("baseline_ml",), len(windows))
    pred, sigma, baseline_ml, start = [], [], [], 0
    for _, batch in batches(windows, batch_size):
        magnitude, log_sigma = split_output(forward(model, batch["X"]))
        pred.append(magnitude.numpy())
        sigma.append(None if log_sigma is None else log_sigma.numpy())
        stop = start + len(batch["X"])
        if kept is None:
            baseline_ml.append(
                baselines.ml_baseline(batch["X"].numpy(), distance[start:stop], SAMPLING_RATE)
            )
        start = stop
    if kept is None:
        kept = {"baseline_ml": np.concatenate(baseline_ml)}
        baseline_cache.save(identity, kept)
    table = _trace_columns(metadata)
    table["pred_magnitude"] = np.concatenate(pred)
    table["residual"] = table["pred_magnitude"] - table["true_magnitude"]
    if sigma[0] is not None:
        table["pred_sigma"] = np.concatenate(sigma)
    table["distance_km"] = distance
    table["baseline_ml"] = kept["baseline_ml"]
    table["baseline_residual"] = table["baseline_ml"] - table["true_magnitude"]
    return table


def _trace_columns(metadata: pd.DataFrame) -> pd.DataFrame:
    """Identity and truth columns of the per-trace predictions table."""
    table = identity_columns(metadata)
    table["true_magnitude"] = pd.to_numeric(metadata["source_magnitude"]).to_numpy(dtype=float)
    return table
