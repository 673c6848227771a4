"""Resolve a --dataset value (seisbench name, directory, synthetic[:N[:SEED]]) to a dataset."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import seisbench.data as sbd

from seismic_ml.data import SPLITS
from seismic_ml.errors import SeismicMLError, first_line

SAMPLING_RATE = 100
COMPONENT_ORDER = "ZNE"
SEISBENCH_DATASETS: dict[str, type[sbd.BenchmarkDataset]] = {
    "ETHZ": sbd.ETHZ,
    "STEAD": sbd.STEAD,
    "GEOFON": sbd.GEOFON,
    "MLAAPDE": sbd.MLAAPDE,
}
DEFAULT_SYNTHETIC_TRACES = 2000
_PICK_COLUMN = re.compile(r"^trace_(?P<phase>.+)_arrival_sample$")
_SYNTHETIC = re.compile(r"^synthetic(?P<mixed>[-_]mixed)?(?::(?P<n>\d+))?(?::(?P<seed>\d+))?$")
RATE_COLUMN = "trace_sampling_rate_hz"
# Columns seisbench reads as floats: a non-numeric value stops it from loading the metadata.
FLOAT_COLUMNS = (RATE_COLUMN, "trace_dt_s")
_SAME_RATE = 1e-4  # seisbench's tolerance for "already at the target rate"


class UnreadableMetadata(SeismicMLError):
    """metadata.csv has values seisbench cannot load; the raw table rides along for inspect."""

    def __init__(self, message: str, metadata: pd.DataFrame) -> None:
        super().__init__(message)
        self.metadata = metadata


def known_datasets() -> list[str]:
    """Names accepted by --dataset besides a directory path."""
    synthetic = ["synthetic", "synthetic:N", "synthetic:N:SEED", "synthetic-mixed[:N[:SEED]]"]
    return [*synthetic, *SEISBENCH_DATASETS]


def canonical_name(name: str) -> str:
    """The one spelling runs record a dataset under: synthetic -> synthetic:2000,
    synthetic_mixed:500:0 -> synthetic-mixed:500, ethz -> ETHZ; a directory stays as given."""
    match = _SYNTHETIC.match(name)
    if match:
        kind = "synthetic-mixed" if match["mixed"] else "synthetic"
        n, seed = int(match["n"] or DEFAULT_SYNTHETIC_TRACES), int(match["seed"] or 0)
        return f"{kind}:{n}" + (f":{seed}" if seed else "")
    return name.upper() if name.upper() in SEISBENCH_DATASETS else name


def load_dataset(name: str) -> sbd.WaveformDataset:
    """The dataset behind a --dataset value, at 100 Hz in ZNE order."""
    match = _SYNTHETIC.match(name)
    if match:
        n, seed = int(match["n"] or DEFAULT_SYNTHETIC_TRACES), int(match["seed"] or 0)
        return _load_synthetic(n, seed, mixed=bool(match["mixed"]))
    if name.upper() in SEISBENCH_DATASETS:
        return _load_seisbench(SEISBENCH_DATASETS[name.upper()])
    path = Path(name).expanduser()
    if path.is_dir():
        return load_directory(path)
    known = ", ".join(known_datasets())
    raise SeismicMLError(f"unknown dataset {name!r}: not a directory and not one of: {known}")


def _load_synthetic(n_traces: int, seed: int, mixed: bool) -> sbd.WaveformDataset:
    from seismic_ml.data.synthetic import ensure_synthetic

    return load_directory(ensure_synthetic(n_traces, seed, mixed))


def load_directory(path: Path) -> sbd.WaveformDataset:
    """A directory in seisbench's format (metadata.csv + waveforms.hdf5)."""
    missing = [f for f in ("metadata.csv", "waveforms.hdf5") if not (path / f).is_file()]
    if missing:
        raise SeismicMLError(
            f"{path} is not a seisbench dataset: missing {' and '.join(missing)} "
            "(write one with seisbench.data.WaveformDataWriter)"
        )
    check_waveform_files(path)
    try:
        with _rates_handled_here():
            dataset = sbd.WaveformDataset(
                path, sampling_rate=SAMPLING_RATE, component_order=COMPONENT_ORDER, cache=None
            )
    except ValueError as exc:
        raise _unreadable_metadata(path / "metadata.csv", exc) from exc
    if len(dataset) == 0:
        raise SeismicMLError(f"{path} holds no traces")
    return fill_rates_from_data_format(dataset)


class _RateWarnings(logging.Filter):
    """Drops seisbench's load-time warnings about rates that this module then handles: empty
    cells are filled from data_format, per-trace rates are the norm, unusable ones are screened."""

    MESSAGES = ("Found some traces with undefined sampling rates", "Inconsistent sampling rates")

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.MESSAGES)


@contextmanager
def _rates_handled_here() -> Iterator[None]:
    seisbench_log = logging.getLogger("seisbench")
    quiet = _RateWarnings()
    seisbench_log.addFilter(quiet)
    try:
        yield
    finally:
        seisbench_log.removeFilter(quiet)


def fill_rates_from_data_format(dataset: sbd.WaveformDataset) -> sbd.WaveformDataset:
    """Give traces without a rate in the metadata the HDF5 data_format's rate.

    seisbench applies data_format's sampling_rate ("the rate of every trace") only when the
    metadata has no rate column at all; a column with empty cells would leave those traces
    unreadable at 100 Hz although the file says what their rate is.
    """
    declared = pd.to_numeric(pd.Series([dataset.data_format.get("sampling_rate")]), errors="coerce")
    rate = float(declared.iloc[0])
    meta = dataset.metadata
    if RATE_COLUMN not in meta.columns or not np.isfinite(rate) or rate <= 0:
        return dataset
    missing = pd.to_numeric(meta[RATE_COLUMN], errors="coerce").isna()
    if missing.any():
        meta.loc[missing, RATE_COLUMN] = rate
    return dataset


def _load_seisbench(cls: type[sbd.BenchmarkDataset]) -> sbd.WaveformDataset:
    """A seisbench benchmark dataset; offline and not cached is a clear error, leaving no debris."""
    path = cls._path_internal()
    existed = path.exists()
    check_waveform_files(path)
    try:
        with _rates_handled_here():
            dataset = cls(sampling_rate=SAMPLING_RATE, component_order=COMPONENT_ORDER, cache=None)
        return fill_rates_from_data_format(dataset)
    except (OSError, ValueError) as exc:
        _remove_partial_download(path, existed)
        name = cls.__name__
        raise SeismicMLError(
            f"dataset {name} is not cached at {path} and could not be downloaded "
            f"({type(exc).__name__}); seisbench looks under SEISBENCH_CACHE_ROOT "
            f"(now {path.parent.parent}); fetch it on a machine with network access with "
            f"`python -c 'import seisbench.data as sbd; sbd.{name}()'` and copy "
            f"datasets/{path.name} there"
        ) from exc


def check_waveform_files(path: Path) -> None:
    """Open every waveforms*.hdf5 under path; a truncated or damaged one is a one-line error."""
    for file in sorted(path.glob("waveforms*.hdf5")) if path.is_dir() else []:
        try:
            h5py.File(file, "r").close()
        except OSError as exc:
            raise unreadable_waveforms(file, exc) from exc


def unreadable_waveforms(file: Path | str, exc: BaseException) -> SeismicMLError:
    """The one-line error for a waveform file that HDF5 cannot read."""
    return SeismicMLError(
        f"cannot read {file}: {first_line(exc)}; the file is truncated or damaged, "
        "write or download it again"
    )


def non_numeric(values: pd.Series) -> pd.Series:
    """True where a value is given but is not a number (empty cells are not counted)."""
    return values.notna() & pd.to_numeric(values, errors="coerce").isna()


def _unreadable_metadata(file: Path, exc: ValueError) -> SeismicMLError:
    try:
        raw = pd.read_csv(file, dtype=str)
    except ValueError:
        raw = pd.DataFrame()
    for column in FLOAT_COLUMNS:
        if column in raw.columns and non_numeric(raw[column]).any():
            bad = raw[column][non_numeric(raw[column])]
            return UnreadableMetadata(
                f"{file}: {len(bad)} traces have a non-numeric {column} (e.g. {bad.iloc[0]!r}); "
                "seisbench cannot load the dataset, fix or remove those rows",
                raw,
            )
    return SeismicMLError(f"cannot load {file}: {first_line(exc)}")


def _remove_partial_download(path: Path, existed: bool) -> None:
    for partial in path.glob("*.partial") if path.exists() else []:
        partial.unlink()
    if not existed and path.exists() and not any(path.iterdir()):
        shutil.rmtree(path)


def phase_of_column(column: str) -> str | None:
    """P or S for a trace_<phase>_arrival_sample column (Pg, sP -> P; Sg, SmS -> S), else None."""
    match = _PICK_COLUMN.match(column)
    if not match:
        return None
    letters = [c for c in match["phase"].upper() if c in "PS"]
    return letters[-1] if letters else None


def pick_columns(metadata: pd.DataFrame) -> dict[str, str]:
    """Every pick column of the metadata mapped to P or S, as seisbench's benchmarks do."""
    mapping = {col: phase_of_column(col) for col in metadata.columns}
    return {col: phase for col, phase in mapping.items() if phase}


def source_rates(metadata: pd.DataFrame) -> np.ndarray:
    """Each trace's own sampling rate in Hz; NaN where unknown, zero, negative or not a number."""
    if RATE_COLUMN not in metadata.columns:
        return np.full(len(metadata), np.nan)
    rate = pd.to_numeric(metadata[RATE_COLUMN], errors="coerce").to_numpy(dtype=float)
    return np.where(np.isfinite(rate) & (rate > 0), rate, np.nan)


def at_sampling_rate(metadata: pd.DataFrame, column: str) -> np.ndarray:
    """A `*_sample` column in samples of the 100 Hz waveform (NaN: no value or unknown rate).

    Datasets store sample positions at each trace's own rate; seisbench rescales them by
    100 / rate only in the metadata `get_sample` returns, so everything that reads them from
    `.metadata` goes through here.
    """
    values = pd.to_numeric(metadata[column], errors="coerce").to_numpy(dtype=float)
    return values * (SAMPLING_RATE / source_rates(metadata))


def pick_samples(metadata: pd.DataFrame) -> pd.DataFrame:
    """Every pick column of the metadata at 100 Hz (NaN: no pick), in the metadata's order."""
    return pd.DataFrame(
        {column: at_sampling_rate(metadata, column) for column in pick_columns(metadata)},
        index=metadata.index,
    )


def first_pick(metadata: pd.DataFrame, phase: str) -> pd.Series:
    """Earliest pick of one phase per trace, in 100 Hz samples (NaN where the trace has none)."""
    picks = pick_samples(metadata)
    columns = [col for col, p in pick_columns(metadata).items() if p == phase]
    if not columns:
        return pd.Series(np.nan, index=metadata.index)
    return picks[columns].min(axis=1)


def resampled_npts(npts: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Samples a trace of npts at rate has at 100 Hz, as seisbench's resampling makes them.

    Unchanged at 100 Hz; scipy's decimate (ceil(n / q)) from an integer multiple q of 100 Hz;
    scipy's resample (int(n * 100 / rate)) from any other rate.
    """
    npts, rate = np.asarray(npts, dtype=float), np.asarray(rate, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        same = np.abs(SAMPLING_RATE / rate - 1) < _SAME_RATE
        factor = np.floor(rate / SAMPLING_RATE)
        multiple = (np.mod(rate, SAMPLING_RATE) < _SAME_RATE) & (factor >= 1)
        return np.where(
            same,
            npts,
            np.where(multiple, np.ceil(npts / factor), np.floor(npts * SAMPLING_RATE / rate)),
        )


def trace_samples(metadata: pd.DataFrame, fallback: int) -> np.ndarray:
    """Samples per trace at 100 Hz from trace_npts and the trace's rate (fallback if unknown)."""
    if "trace_npts" not in metadata.columns:
        return np.full(len(metadata), fallback, dtype=np.int64)
    npts = pd.to_numeric(metadata["trace_npts"], errors="coerce").to_numpy(dtype=float)
    samples = resampled_npts(npts, source_rates(metadata))
    return np.where(np.isfinite(samples), samples, fallback).astype(np.int64)


def get_split(dataset: sbd.WaveformDataset, split: str, max_traces: int = 0) -> sbd.WaveformDataset:
    """One split; datasets without a split column get a deterministic 70/10/20 split."""
    if split not in SPLITS:
        raise SeismicMLError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    if "split" in dataset.metadata.columns:
        labels = dataset.metadata["split"].astype(str).to_numpy()
    else:
        labels = _default_split(len(dataset))
    mask = labels == split
    if max_traces:
        mask &= np.cumsum(mask) <= max_traces
    if not mask.any():
        raise SeismicMLError(f"the dataset has no traces in split {split!r}")
    return dataset.filter(mask, inplace=False)


def _default_split(n: int) -> np.ndarray:
    draw = np.random.default_rng(0).random(n)
    return np.where(draw < 0.7, "train", np.where(draw < 0.8, "dev", "test"))
