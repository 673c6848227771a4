"""Whole batches of training and validation windows: vectorised windowing, normalisation, labels.

seisbench's generators run their augmentations in Python once per window; on 2 cores that per-window
work took about a quarter of a PhaseNet training step. These datasets do the same recipe on a
whole batch at once with numpy (one gather, one normalisation, one label computation), so the
data path costs a few percent of a step and needs no loader workers competing with the model
for the cores. The recipes follow seisbench's (see pipelines.py, which keeps the reference
generators): tests check that windows and labels equal seisbench's for the same windows.

A batch is fetched by a list of indices (the loader's sampler is a BatchSampler), and its random
draws come from a generator seeded by (seed, epoch, indices): the same batches for any number of
loader workers, and again after a resume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seisbench.data as sbd
import torch
from torch.utils.data import Dataset

from seismic_ml.data.pipelines import (
    EVAL_PHASE_OFFSET_RANGE,
    P_OFFSET_RANGE,
    PHASE_CONTEXT,
    eval_windows,
)
from seismic_ml.data.registry import first_pick, pick_columns, pick_samples
from seismic_ml.data.waveforms import WaveformSource

EPS = 1e-10  # as seisbench's Normalize


def pick_table(metadata: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Every pick column in 100 Hz samples (NaN: no pick) and the phase (P or S) of each."""
    columns = pick_columns(metadata)
    picks = pick_samples(metadata).to_numpy(dtype=float)
    return picks.reshape(len(metadata), len(columns)), list(columns.values())


def normalize(x: np.ndarray, kind: str) -> np.ndarray:
    """Demean each channel, then divide by its std or peak (seisbench's Normalize, batched),
    in float32 and in place after the one demeaned copy: evaluation cuts these beside the
    forward on the same cores, so every pass over the batch counts."""
    x = np.subtract(x, x.mean(axis=-1, keepdims=True), dtype=np.float32)
    if kind == "peak":
        scale = np.abs(x).max(axis=-1, keepdims=True)
    else:  # the demeaned channel's std: the root of its mean square
        scale = np.sqrt(np.einsum("bcl,bcl->bc", x, x)[..., None] / x.shape[-1])
    x /= scale + np.float32(EPS)
    return x


def pick_labels(
    picks: np.ndarray,
    phases: Sequence[str],
    start: np.ndarray,
    length: int,
    labels: str,
    sigma: float,
) -> np.ndarray:
    """Gaussian pick labels (B, labels, length) as seisbench's ProbabilisticLabeller makes them.

    Each phase is the maximum of its columns' Gaussians; where P and S overlap they are scaled
    to sum to at most one, and the noise label N is one minus their sum.
    """
    t = np.arange(length, dtype=np.float32)
    y = np.zeros((len(start), len(labels), length), dtype=np.float32)
    for column, phase in enumerate(phases):
        if phase not in labels:
            continue
        onset = (picks[:, column] - start).astype(np.float32)  # relative to the window
        has = np.isfinite(onset)
        if not has.any():
            continue
        gauss = np.exp((t[None, :] - onset[has, None]) ** 2 * np.float32(-0.5 / sigma**2))
        channel = labels.index(phase)
        y[has, channel] = np.maximum(y[has, channel], gauss)
    if "N" in labels:
        y /= np.maximum(1.0, y.sum(axis=1, keepdims=True))
        y[:, labels.index("N")] = 1.0 - y.sum(axis=1)
    return y


class WindowBatches(Dataset):
    """A split as batches: dataset[list of indices] is one batch dict {"X": ..., "y": ...}."""

    def __init__(
        self, source: WaveformSource, dataset: sbd.WaveformDataset, windowlen: int, seed: int
    ) -> None:
        self.source = source
        self.dataset = dataset  # the split the windows come from (its metadata, its path)
        self.metadata = dataset.metadata
        self.windowlen = windowlen
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.metadata)

    def set_epoch(self, epoch: int) -> None:
        """Training draws differ per epoch, and repeat for the same epoch (resume)."""
        self.epoch = epoch

    def rng(self, rows: np.ndarray) -> np.random.Generator:
        """The batch's random draws: a function of seed, epoch and the rows only."""
        return np.random.default_rng([self.seed, self.epoch, *rows.tolist()])

    def steered_starts(
        self, window_seed: int | None, offset_range: tuple[int, int]
    ) -> np.ndarray | None:
        """Fixed window starts (validation, evaluation) as seisbench's steered windows use them,
        seeded by window_seed; None: random windows (training)."""
        if window_seed is None:
            return None
        table = eval_windows(self.metadata, self.windowlen, window_seed, offset_range)
        return table["start_sample"].to_numpy()

    def __getitem__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        x, y = self.batch(rows)
        if y is None:
            return {"X": torch.from_numpy(x)}
        return {"X": torch.from_numpy(x), "y": torch.from_numpy(y)}

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Windows and targets of the rows (None: the windows are not labelled)."""
        raise NotImplementedError


class PhaseBatches(WindowBatches):
    """Phase windows: random around a pick (training) or at fixed starts (validation); without
    labels (labelled=False) for evaluation, which scores against the picks themselves."""

    def __init__(
        self,
        source: WaveformSource,
        dataset: sbd.WaveformDataset,
        windowlen: int,
        labels: str,
        sigma: float,
        norm: str = "std",
        seed: int = 0,
        window_seed: int | None = None,
        labelled: bool = True,
    ) -> None:
        super().__init__(source, dataset, windowlen, seed)
        self.labels, self.sigma, self.norm, self.labelled = labels, sigma, norm, labelled
        self.picks, self.phases = pick_table(self.metadata)
        self.fixed_starts = self.steered_starts(window_seed, EVAL_PHASE_OFFSET_RANGE)

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Cut, normalise and (when labelled) label the rows' windows."""
        if self.fixed_starts is not None:
            start = self.fixed_starts[rows]
            lo, hi = np.zeros_like(start), self.source.lengths[rows]
        else:
            lo, hi, start = self._random_windows(rows)
        x = normalize(self.source.windows(rows, lo, hi, start, self.windowlen), self.norm)
        if not self.labelled:
            return x, None
        y = pick_labels(
            self.picks[rows], self.phases, start, self.windowlen, self.labels, self.sigma
        )
        return x, y

    def _random_windows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """seisbench's PhaseNet recipe: a 6000-sample context around a random pick (clipped to
        the trace), then a random window inside it, zero-padded where the context is shorter."""
        rng = self.rng(rows)
        picks = self.picks[rows]
        chosen = np.full(len(rows), PHASE_CONTEXT // 2, dtype=np.int64)  # no pick: the start
        for i, row_picks in enumerate(picks):
            found = row_picks[np.isfinite(row_picks)]
            if found.size:
                chosen[i] = int(rng.choice(found))
        lo = np.maximum(chosen - PHASE_CONTEXT // 2, 0)
        hi = np.minimum(chosen - PHASE_CONTEXT // 2 + PHASE_CONTEXT, self.source.lengths[rows])
        span = hi - lo
        fits = span >= self.windowlen
        draw = rng.random(len(rows))
        start = np.where(
            fits,
            lo + (draw * (span - self.windowlen + 1)).astype(np.int64),
            lo - (draw * (self.windowlen - span + 1)).astype(np.int64),  # padded on both sides
        )
        return lo, hi, start


class MagnitudeBatches(WindowBatches):
    """Magnitude windows with P at a random (training) or fixed (validation) offset; raw counts."""

    def __init__(
        self,
        source: WaveformSource,
        dataset: sbd.WaveformDataset,
        windowlen: int,
        seed: int = 0,
        window_seed: int | None = None,
    ) -> None:
        super().__init__(source, dataset, windowlen, seed)
        self.p = first_pick(self.metadata, "P").to_numpy(dtype=float)
        self.magnitude = pd.to_numeric(self.metadata["source_magnitude"]).to_numpy(dtype=np.float32)
        self.fixed_starts = self.steered_starts(window_seed, P_OFFSET_RANGE)

    def batch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cut the rows' windows; the target is the trace's magnitude."""
        if self.fixed_starts is not None:
            start = self.fixed_starts[rows]
        else:
            low, high = P_OFFSET_RANGE
            offset = self.rng(rows).integers(low, high + 1, size=len(rows))
            start = self.p[rows].astype(np.int64) - offset
        lo, hi = np.zeros_like(start), self.source.lengths[rows]
        x = self.source.windows(rows, lo, hi, start, self.windowlen)
        return x, self.magnitude[rows].copy()
