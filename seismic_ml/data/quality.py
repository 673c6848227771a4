"""Screen a dataset before it reaches a loss: unusable waveforms and metadata, counted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import seisbench.data as sbd

from seismic_ml import progress
from seismic_ml.data.registry import (
    FLOAT_COLUMNS,
    RATE_COLUMN,
    SAMPLING_RATE,
    non_numeric,
    pick_columns,
    source_rates,
    unreadable_waveforms,
)
from seismic_ml.errors import SeismicMLError

log = logging.getLogger(__name__)
SCREEN_BATCH = 256  # traces read per get_waveforms call: about 18 MB for 3 x 6000 float32


@dataclass
class ScreenReport:
    """Traces left out of a dataset because their waveform cannot be trained or scored on."""

    n_excluded_nonfinite: int = 0
    n_excluded_zero: int = 0

    def __add__(self, other: ScreenReport) -> ScreenReport:
        return ScreenReport(
            self.n_excluded_nonfinite + other.n_excluded_nonfinite,
            self.n_excluded_zero + other.n_excluded_zero,
        )

    def to_params(self) -> dict[str, str]:
        """The counts as MLflow params."""
        return {
            "data.n_excluded_nonfinite": str(self.n_excluded_nonfinite),
            "data.n_excluded_zero": str(self.n_excluded_zero),
        }


@dataclass
class Problem:
    """One kind of bad input found in a dataset: where, how many traces, what it means."""

    column: str
    count: int
    meaning: str


def screen(
    dataset: sbd.WaveformDataset, split: str = ""
) -> tuple[sbd.WaveformDataset, ScreenReport]:
    """The dataset without traces of unusable sampling rate, NaN/Inf or all-zero waveforms."""
    where = f"{split} split: " if split else ""
    dataset = drop_bad_rates(dataset, split)
    if split:
        note_rates(dataset, split)
    nonfinite, zero = waveform_flags(dataset)
    report = ScreenReport(int(nonfinite.sum()), int(zero.sum()))
    keep = ~(nonfinite | zero)
    counts = (
        f"{report.n_excluded_nonfinite} with NaN or Inf samples, {report.n_excluded_zero} all zero"
    )
    if not keep.any():
        raise SeismicMLError(f"{where}every one of its {len(keep)} traces is unusable ({counts})")
    if keep.all():
        return dataset, report
    log.warning("%s%d traces left out (%s)", where, int((~keep).sum()), counts)
    return dataset.filter(keep, inplace=False), report


def drop_bad_rates(dataset: sbd.WaveformDataset, split: str = "") -> sbd.WaveformDataset:
    """The dataset without traces whose sampling rate cannot be resampled to 100 Hz (warned)."""
    where = f"{split} split: " if split else ""
    bad = ~usable_rate(dataset.metadata)
    if not bad.any():
        return dataset
    message = (
        f"{bad.sum()} traces have a {RATE_COLUMN} that cannot be resampled to {SAMPLING_RATE} Hz"
    )
    if bad.all():
        raise SeismicMLError(f"{where}all {message} (missing or <= 0)")
    log.warning("%s%s (missing or <= 0) and are left out", where, message)
    return dataset.filter(~bad, inplace=False)


def usable_rate(meta: pd.DataFrame) -> np.ndarray:
    """True where a trace's sampling rate is a positive number seisbench can resample from."""
    return np.isfinite(source_rates(meta))


def rate_summary(meta: pd.DataFrame) -> str:
    """How many traces are at 100 Hz and how many are resampled from which rate, in one line."""
    rates = pd.Series(source_rates(meta)).dropna().round(3)
    counts = rates.value_counts().sort_index()
    native = int(counts.pop(float(SAMPLING_RATE))) if SAMPLING_RATE in counts.index else 0
    parts = [f"{native} at {SAMPLING_RATE} Hz"]
    parts += [f"{int(n)} resampled from {rate:g} Hz" for rate, n in counts.items()]
    if len(rates) < len(meta):
        parts.append(f"{len(meta) - len(rates)} of unknown rate (left out)")
    return f"{len(meta)} traces: " + ", ".join(parts)


def note_rates(dataset: sbd.WaveformDataset, split: str) -> None:
    """Tell the user which traces of a split are resampled to 100 Hz, and from which rates."""
    rates = source_rates(dataset.metadata)
    if np.any(np.abs(rates - SAMPLING_RATE) > 1e-3):
        progress.note(f"{split} split: {rate_summary(dataset.metadata)}")


def waveform_flags(dataset: sbd.WaveformDataset) -> tuple[np.ndarray, np.ndarray]:
    """Per trace: any sample NaN or Inf; every sample zero (a non-finite trace is not also zero)."""
    n = len(dataset)
    nonfinite, zero = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    with _reading(dataset):
        for start in range(0, n, SCREEN_BATCH):
            idx = np.arange(start, min(start + SCREEN_BATCH, n))
            flat = dataset.get_waveforms(idx.tolist()).reshape(len(idx), -1)
            finite = np.isfinite(flat).all(axis=1)
            nonfinite[idx] = ~finite
            zero[idx] = finite & ~flat.any(axis=1)
    return nonfinite, zero


@contextmanager
def _reading(dataset: sbd.WaveformDataset) -> Iterator[None]:
    try:
        yield
    except (OSError, KeyError) as exc:
        raise unreadable_waveforms(_waveform_file(dataset), exc) from exc


def _waveform_file(dataset: sbd.WaveformDataset) -> Path:
    files = sorted(Path(dataset.path).glob("waveforms*.hdf5"))
    return files[0] if len(files) == 1 else Path(dataset.path) / "waveforms*.hdf5"


def metadata_problems(meta: pd.DataFrame) -> list[Problem]:
    """Missing pick columns, non-numeric values, sampling rates that cannot be resampled."""
    return [*_pick_problems(meta), *_magnitude_problems(meta), *_rate_problems(meta)]


_NO_PICK_MEANING = {
    "P": "phase training refuses the dataset; magnitude training has no P to window on",
    "S": "phase training refuses the dataset",
}


def _pick_problems(meta: pd.DataFrame) -> list[Problem]:
    columns = pick_columns(meta)
    problems = [
        Problem(f"trace_{phase}_arrival_sample", len(meta), f"no {phase} pick column: {meaning}")
        for phase, meaning in _NO_PICK_MEANING.items()
        if phase not in columns.values()
    ]
    for column in columns:
        problems += _non_numeric_problem(meta, column, "not a sample index: read as no pick")
    return problems


def _magnitude_problems(meta: pd.DataFrame) -> list[Problem]:
    if "source_magnitude" not in meta.columns:
        return [Problem("source_magnitude", len(meta), "no magnitude column: no magnitude targets")]
    return _non_numeric_problem(meta, "source_magnitude", "left out of magnitude training")


def _rate_problems(meta: pd.DataFrame) -> list[Problem]:
    problems = []
    for column in FLOAT_COLUMNS:
        problems += _non_numeric_problem(meta, column, "seisbench cannot load the dataset")
    if problems or RATE_COLUMN not in meta.columns:
        return problems
    rate = pd.to_numeric(meta[RATE_COLUMN], errors="coerce")
    left_out = f"cannot be resampled to {SAMPLING_RATE} Hz: left out"
    found = [
        Problem(
            RATE_COLUMN, int(rate.isna().sum()), f"missing here and in data_format: {left_out}"
        ),
        Problem(RATE_COLUMN, int((rate <= 0).sum()), f"zero or negative: {left_out}"),
    ]
    return [p for p in found if p.count]


def _non_numeric_problem(meta: pd.DataFrame, column: str, consequence: str) -> list[Problem]:
    if column not in meta.columns:
        return []
    bad = meta[column][non_numeric(meta[column])]
    if bad.empty:
        return []
    return [Problem(column, len(bad), f"non-numeric (e.g. {bad.iloc[0]!r}): {consequence}")]


def waveform_problems(nonfinite: np.ndarray, zero: np.ndarray) -> list[Problem]:
    """Waveform flags as problems; training leaves these traces out and counts them."""
    found = [
        Problem("waveform", int(nonfinite.sum()), "NaN or Inf samples: left out of training"),
        Problem("waveform", int(zero.sum()), "all samples zero: left out of training"),
    ]
    return [p for p in found if p.count]
