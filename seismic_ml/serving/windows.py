"""Predictions on raw 100 Hz ZNE windows, shared by the pyfunc model and `TrainedModel`.

A request is a long table, one row per sample: `window` (an id), `Z`, `N`, `E` (raw counts);
each window has exactly the model's input length. Phase models answer with one row per pick
(window, phase, time_s after the window's first sample, probability), magnitude models with
one row per window (window, magnitude and, for gaussian_nll models, sigma). A picker's
threshold is one number for every phase or one per phase ({"P": 0.41, "S": 0.27}; a phase it
does not name: DEFAULT_THRESHOLD).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from seismic_ml.errors import SeismicMLError
from seismic_ml.models.magnitude import split_output

SAMPLING_RATE = 100.0
INPUT_COLUMNS = ("window", "Z", "N", "E")
PICK_COLUMNS = ["window", "phase", "time_s", "probability"]
DEFAULT_THRESHOLD = 0.3


def expected_input(in_samples: int) -> str:
    """The request layout in words, for error messages."""
    return (
        f"columns window, Z, N, E (raw counts, 100 Hz), one row per sample, "
        f"exactly {in_samples} rows per window"
    )


def windows_from_frame(frame: pd.DataFrame, in_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, in_samples) float32 windows and their ids from the long request table."""
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise SeismicMLError(
            f"missing column(s) {', '.join(missing)}; expected {expected_input(in_samples)}"
        )
    ids, first, counts = np.unique(
        frame["window"].to_numpy(), return_index=True, return_counts=True
    )
    if len(ids) == 0 or (counts != in_samples).any():
        bad = np.flatnonzero(counts != in_samples)
        got = f"window {ids[bad[0]]} has {counts[bad[0]]} rows" if len(bad) else "no rows"
        raise SeismicMLError(f"{got}; expected {expected_input(in_samples)}")
    order = np.argsort(first)
    values = frame.sort_values("window", kind="stable")[["Z", "N", "E"]].to_numpy(np.float32)
    x = values.reshape(len(ids), in_samples, 3).transpose(0, 2, 1)[order]
    if not np.isfinite(x).all():
        raise SeismicMLError("the windows hold NaN or infinite values; expected finite counts")
    return np.ascontiguousarray(x), ids[order]


def frame_from_windows(x: np.ndarray) -> pd.DataFrame:
    """The long request table of (n, 3, samples) windows, numbered from 0."""
    n, _, samples = x.shape
    columns = {"window": np.repeat(np.arange(n, dtype=np.int64), samples)}
    columns.update({c: x[:, i].astype(np.float64).ravel() for i, c in enumerate("ZNE")})
    return pd.DataFrame(columns)


Thresholds = float | Mapping[str, float]


def pick_thresholds(given: float | None, stored: Mapping[str, float]) -> dict[str, float]:
    """Per phase: the given threshold, else the one stored with the model, else the default."""
    if given is not None:
        return {phase: float(given) for phase in "PS"}
    return {phase: float(stored.get(phase, DEFAULT_THRESHOLD)) for phase in "PS"}


def predict_windows(
    module: nn.Module, task: str, x: np.ndarray, ids: np.ndarray, threshold: Thresholds
) -> pd.DataFrame:
    """Picks (phase models) or magnitudes of (n, 3, samples) raw windows."""
    if task == "phase":
        return pick_windows(module, x, ids, threshold)
    return magnitude_windows(module, x, ids)


@torch.no_grad()
def magnitude_windows(module: nn.Module, x: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    """One row per window: its id, the magnitude and (gaussian_nll models) sigma."""
    magnitude, sigma = split_output(module(torch.from_numpy(x)))
    table = pd.DataFrame({"window": ids.astype(np.int64), "magnitude": magnitude.double().numpy()})
    if sigma is not None:
        table["sigma"] = sigma.double().numpy()
    return table


@torch.no_grad()
def pick_windows(
    module: nn.Module, x: np.ndarray, ids: np.ndarray, threshold: Thresholds
) -> pd.DataFrame:
    """One row per pick: the peak of every stretch of P or S probability at or above its phase's
    threshold."""
    if not isinstance(threshold, Mapping):
        threshold = pick_thresholds(threshold, {})
    probs = module(module.annotate_batch_pre(torch.from_numpy(x), {})).double().numpy()
    rows = []
    for i, window in enumerate(ids):
        for phase in (p for p in "PS" if p in module.labels):
            curve = probs[i, module.labels.index(phase)]
            level = threshold.get(phase, DEFAULT_THRESHOLD)
            for sample in peak_samples(curve, level):
                rows.append((int(window), phase, sample / SAMPLING_RATE, float(curve[sample])))
    table = pd.DataFrame(rows, columns=PICK_COLUMNS)
    return table.astype({"window": np.int64, "phase": str, "time_s": float, "probability": float})


def peak_samples(curve: np.ndarray, threshold: float) -> list[int]:
    """The sample of the maximum of each run of consecutive samples at or above threshold."""
    above = np.flatnonzero(curve >= threshold)
    if len(above) == 0:
        return []
    runs = np.split(above, np.flatnonzero(np.diff(above) > 1) + 1)
    return [int(run[np.argmax(curve[run])]) for run in runs]
