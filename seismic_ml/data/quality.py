"""Screen a dataset before it reaches a loss: unusable waveforms and metadata, counted."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
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
from seismic_ml.data.screen_cache import (
    ScreenFlags,
    load_flags,
    save_flags,
    screening_identity,
    screening_key,
)
from seismic_ml.errors import SeismicMLError

log = logging.getLogger(__name__)
SCREEN_BATCH = 256  # traces read per get_waveforms call: about 18 MB for 3 x 6000 float32
ADDRESS_BATCH = 100_000  # metadata rows whose trace_name addresses are checked at once
_INDEX = r"[+-]?\d+"  # a location's leading integer index, as seisbench's int() reads it


@dataclass
class ScreenReport:
    """Traces left out of a dataset because their waveform cannot be trained or scored on."""

    n_excluded_nonfinite: int = 0
    n_excluded_zero: int = 0
    n_excluded_missing: int = 0  # metadata rows naming no waveform in the HDF5 file

    def __add__(self, other: ScreenReport) -> ScreenReport:
        return ScreenReport(
            self.n_excluded_nonfinite + other.n_excluded_nonfinite,
            self.n_excluded_zero + other.n_excluded_zero,
            self.n_excluded_missing + other.n_excluded_missing,
        )

    def to_params(self) -> dict[str, str]:
        """The counts as MLflow params."""
        return {
            "data.n_excluded_nonfinite": str(self.n_excluded_nonfinite),
            "data.n_excluded_zero": str(self.n_excluded_zero),
            "data.n_excluded_missing": str(self.n_excluded_missing),
        }


@dataclass
class Problem:
    """One kind of bad input found in a dataset: where, how many traces, what it means."""

    column: str
    count: int
    meaning: str


def screen(
    dataset: sbd.WaveformDataset, split: str = "", cache: bool = True
) -> tuple[sbd.WaveformDataset, ScreenReport]:
    """The dataset without traces of unusable rate, naming no waveform, NaN/Inf or all zero.

    The verdicts are kept per dataset file (screen_cache): screening the same rows of unchanged
    files again reads no waveform (cache=False: always read, keep nothing).
    """
    screening = Screening.start(dataset, split, cache)
    if not screening.flags.waveforms:
        screening.add_waveforms(*waveform_flags(screening.to_read(), split))
    return screening.finish()


@dataclass
class Screening:
    """One split's screening in two halves: the metadata verdicts (or a kept report's) at the
    start, then the waveform verdicts from whoever reads the waveforms (screen, or a preload)."""

    dataset: sbd.WaveformDataset  # the split as given
    split: str
    flags: ScreenFlags
    key: str
    identity: dict[str, Any]
    origin: str  # "cached": the verdicts of a kept report; "screened": read in this process
    cache: bool = True
    _to_read: sbd.WaveformDataset | None = field(default=None, init=False, repr=False)

    @classmethod
    def start(cls, dataset: sbd.WaveformDataset, split: str = "", cache: bool = True) -> Screening:
        """The verdicts known before any waveform is read; bad rates, bad addresses warned."""
        identity = screening_identity(dataset)
        key = screening_key(identity)
        kept = load_flags(key, identity, dataset.metadata) if cache else None
        flags = kept if kept is not None else metadata_flags(dataset)
        origin = "screened" if kept is None else "cached"
        screening = cls(dataset, split, flags, key, identity, origin, cache)
        screening.admit_readable()
        return screening

    @property
    def where(self) -> str:
        """'<split> split: ' to start a message with, or ''."""
        return f"{self.split} split: " if self.split else ""

    def to_read(self) -> sbd.WaveformDataset:
        """Rows whose waveforms are read next: the kept ones, or while the waveform verdicts are
        unknown every readable one."""
        if self._to_read is None:
            mask = self.flags.keep if self.flags.waveforms else self.flags.readable
            self._to_read = _subset(self.dataset, mask)
        return self._to_read

    def add_waveforms(self, nonfinite: np.ndarray, zero: np.ndarray) -> None:
        """The waveform verdicts of the readable rows (in to_read's order), then kept on disk."""
        readable = self.flags.readable
        self.flags.nonfinite[readable], self.flags.zero[readable] = nonfinite, zero
        self.flags.waveforms, self._to_read = True, None
        if self.cache:
            save_flags(self.key, self.identity, self.dataset.metadata, self.flags)

    def admit_readable(self) -> None:
        """Warn about rows of unusable rate or naming no waveform; refuse a split of only those."""
        bad, missing = self.flags.bad_rate, self.flags.missing
        if bad.any():
            message = _bad_rate_message(int(bad.sum()))
            if bad.all():
                raise SeismicMLError(f"{self.where}all {message} (missing or <= 0)")
            log.warning("%s%s (missing or <= 0) and are left out", self.where, message)
        if self.split:
            meta = self.dataset.metadata
            _note_rates(meta[~bad] if bad.any() else meta, self.split)
        n = int(missing.sum())
        if not n:
            return
        file, example = missing_example(self.dataset, missing)
        if n == int((~bad).sum()):
            raise SeismicMLError(
                f"{self.where}every one of its {n} traces names no waveform in {file} "
                f"(e.g. {example!r})"
            )
        where = self.where
        log.warning(
            "%s%d traces name no waveform in %s (e.g. %r) and are left out", where, n, file, example
        )

    def finish(self) -> tuple[sbd.WaveformDataset, ScreenReport]:
        """The kept rows and the counts; a split without one usable trace is refused in one line."""
        flags = self.flags
        report = ScreenReport(
            int(flags.nonfinite.sum()), int(flags.zero.sum()), int(flags.missing.sum())
        )
        counts = (
            f"{report.n_excluded_nonfinite} with NaN or Inf samples, "
            f"{report.n_excluded_zero} all zero"
        )
        keep = flags.keep
        if not keep.any():
            n_missing = report.n_excluded_missing
            counts += f", {n_missing} naming no waveform" if n_missing else ""
            n_rows = int((~flags.bad_rate).sum())
            raise SeismicMLError(
                f"{self.where}every one of its {n_rows} traces is unusable ({counts})"
            )
        left_out = int((flags.nonfinite | flags.zero).sum())
        if left_out:
            log.warning("%s%d traces left out (%s)", self.where, left_out, counts)
        return _subset(self.dataset, keep), report


def _subset(dataset: sbd.WaveformDataset, mask: np.ndarray) -> sbd.WaveformDataset:
    """The rows of a mask (the dataset itself when it keeps every row)."""
    return dataset if mask.all() else dataset.filter(mask, inplace=False)


def metadata_flags(dataset: sbd.WaveformDataset) -> ScreenFlags:
    """Rows of unusable rate, and among the others rows naming no waveform; no waveform read."""
    flags = ScreenFlags.none(len(dataset), waveforms=False)
    flags.bad_rate[:] = ~usable_rate(dataset.metadata)
    rated = ~flags.bad_rate
    if rated.any():
        flags.missing[rated] = missing_waveforms(_subset(dataset, rated))
    return flags


def missing_example(dataset: sbd.WaveformDataset, missing: np.ndarray) -> tuple[Path, str]:
    """The file the flagged rows point into (waveforms*.hdf5 if several) and one's trace_name."""
    meta = dataset.metadata[missing]
    chunks = _chunk_column(meta).unique()
    file = _chunk_file(dataset, chunks[0]) if len(chunks) == 1 else _waveform_file(dataset)
    return file, str(meta["trace_name"].iloc[0])


def missing_waveforms(dataset: sbd.WaveformDataset) -> np.ndarray:
    """Per row: its trace_name (block$location in its trace_chunk's file) selects no waveform.

    Checked against the blocks' shapes, without reading a sample: the block exists, the row
    index lies inside it, every slice stays within the stored trace and selects something.
    Rows are checked ADDRESS_BATCH at a time, so the extra memory stays bounded.
    """
    meta, shapes = dataset.metadata, BlockShapes(dataset)
    batches = [
        _off_blocks(_addresses(meta.iloc[start : start + ADDRESS_BATCH]), shapes)
        for start in range(0, len(meta), ADDRESS_BATCH)
    ]
    return np.concatenate(batches) if batches else np.zeros(0, dtype=bool)


def _addresses(meta: pd.DataFrame) -> pd.DataFrame:
    """Each row's chunk, block and location, as seisbench splits trace_name (no '$': ':')."""
    parts = meta["trace_name"].astype(str).str.partition("$")
    location = parts[2].str.replace(" ", "", regex=False)  # seisbench ignores blanks there
    return pd.DataFrame(
        {
            "chunk": _chunk_column(meta).to_numpy(),
            "block": parts[0].to_numpy(),
            "location": location.where(parts[1] == "$", ":").to_numpy(),
        }
    )


def _chunk_column(meta: pd.DataFrame) -> pd.Series:
    """Each row's trace_chunk ('' for a dataset of one file)."""
    if "trace_chunk" not in meta.columns:
        return pd.Series("", index=meta.index)
    return meta["trace_chunk"].fillna("").astype(str)


def _chunk_file(dataset: sbd.WaveformDataset, chunk: str) -> Path:
    """The waveform file of one chunk, named as seisbench names it."""
    return Path(dataset.path) / f"waveforms{chunk}.hdf5"


class BlockShapes:
    """Shapes of the HDF5 blocks rows name, looked up once per (chunk, block)."""

    def __init__(self, dataset: sbd.WaveformDataset) -> None:
        self.dataset = dataset
        self.known: dict[tuple[str, str], tuple[int, ...] | None] = {}
        self.dims = len(str(dataset.data_format.get("dimension_order", "CW")))

    def __getitem__(self, key: tuple[str, str]) -> tuple[int, ...] | None:
        """The shape of a (chunk, block) learned before; None where there is no such block."""
        return self.known[key]

    def learn(self, frame: pd.DataFrame) -> None:
        """Look up every block of these rows not seen yet, each chunk's file opened once."""
        pairs = frame[["chunk", "block"]].drop_duplicates().itertuples(index=False, name=None)
        new = pd.DataFrame([p for p in pairs if p not in self.known], columns=["chunk", "block"])
        for chunk, blocks in new.groupby("chunk", sort=False)["block"]:
            self.known.update(((str(chunk), b), s) for b, s in self._read(str(chunk), blocks))

    def _read(self, chunk: str, blocks: pd.Series) -> list[tuple[str, tuple[int, ...] | None]]:
        """Each block's shape in the chunk's file; a file HDF5 cannot read is a one-line error."""
        if chunk not in self.dataset.chunks:
            return [(b, None) for b in blocks]
        file = _chunk_file(self.dataset, chunk)
        try:
            with h5py.File(file, "r") as handle:
                return [(b, _block_shape(handle, b)) for b in blocks]
        except (OSError, RuntimeError) as exc:  # HDF5's errors for a damaged group or link table
            raise unreadable_waveforms(file, exc) from exc


def _block_shape(handle: h5py.File, block: str) -> tuple[int, ...] | None:
    """The shape of data/<block>; None where there is no such dataset."""
    data = handle.get("data")
    if not isinstance(data, h5py.Group) or not block or block not in data:
        return None
    found = data.get(block)
    return found.shape if isinstance(found, h5py.Dataset) else None


def _off_blocks(frame: pd.DataFrame, shapes: BlockShapes) -> np.ndarray:
    """Per row: its location does not select a waveform of its block.

    The leading row index is checked per row, vectorised; the rest of the location is parsed
    once per distinct (chunk, block, pattern), so a million rows in few buckets parse a few times.
    """
    shapes.learn(frame)
    head, comma, rest = (column for _, column in frame["location"].str.partition(",").items())
    index = pd.to_numeric(head.where(head.str.fullmatch(_INDEX)), errors="coerce").to_numpy()
    indexed = ~np.isnan(index)
    keys = frame[["chunk", "block"]].assign(
        indexed=indexed, pattern=np.where(indexed, comma + rest, frame["location"])
    )
    code = keys.groupby(list(keys.columns), sort=False).ngroup().to_numpy()
    unique = list(keys.drop_duplicates().itertuples(index=False, name=None))
    block = [shapes[(c, b)] for c, b, _, _ in unique]
    fits = np.array(
        [_pattern_fits(s, i, p, shapes.dims) for s, (_, _, i, p) in zip(block, unique)], dtype=bool
    )
    length = np.array([s[0] if s else 0 for s in block], dtype=np.int64)[code]
    inside = ~indexed | ((index >= -length) & (index < length))
    return ~(fits[code] & inside)


def _pattern_fits(shape: tuple[int, ...] | None, indexed: bool, pattern: str, dims: int) -> bool:
    """Whether a location (after an in-range row index if indexed) selects a dims-D waveform."""
    if not shape:
        return False
    parts = pattern.split(",")[1:] if indexed else pattern.split(",")
    return _selected_dims(parts, shape[1:] if indexed else shape) == dims


def _selected_dims(parts: list[str], shape: tuple[int, ...]) -> int | None:
    """Dimensions h5py returns for these location parts; None where one falls off the block."""
    if len(parts) > len(shape):
        return None
    dims = len(shape) - len(parts)
    for part, size in zip(parts, shape):
        fields = part.split(":")
        if len(fields) == 1 and _index_fits(fields[0], size):
            continue
        if not 2 <= len(fields) <= 3 or not _slice_fits(fields, size):
            return None
        dims += 1
    return dims


def _index_fits(field: str, size: int) -> bool:
    """An integer index inside an axis of this size."""
    return re.fullmatch(_INDEX, field) is not None and -size <= int(field) < size


def _slice_fits(fields: list[str], size: int) -> bool:
    """A start:stop[:step] slice that stays within the axis and selects at least one sample."""
    if not all(f == "" or re.fullmatch(_INDEX, f) for f in fields):
        return False
    start, stop, step = (int(f) if f else None for f in [*fields, ""][:3])
    if step is not None and step < 1:
        return False
    if any(v is not None and not -size <= v <= size for v in (start, stop)):
        return False
    return len(range(*slice(start, stop, step).indices(size))) > 0


def drop_bad_rates(dataset: sbd.WaveformDataset, split: str = "") -> sbd.WaveformDataset:
    """The dataset without traces whose sampling rate cannot be resampled to 100 Hz (warned)."""
    where = f"{split} split: " if split else ""
    bad = ~usable_rate(dataset.metadata)
    if not bad.any():
        return dataset
    message = _bad_rate_message(int(bad.sum()))
    if bad.all():
        raise SeismicMLError(f"{where}all {message} (missing or <= 0)")
    log.warning("%s%s (missing or <= 0) and are left out", where, message)
    return dataset.filter(~bad, inplace=False)


def _bad_rate_message(n: int) -> str:
    """How many traces have a rate seisbench cannot resample to 100 Hz."""
    return f"{n} traces have a {RATE_COLUMN} that cannot be resampled to {SAMPLING_RATE} Hz"


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
    _note_rates(dataset.metadata, split)


def _note_rates(meta: pd.DataFrame, split: str) -> None:
    """note_rates on a metadata table."""
    rates = source_rates(meta)
    if np.any(np.abs(rates - SAMPLING_RATE) > 1e-3):
        progress.note(f"{split} split: {rate_summary(meta)}")


def waveform_flags(dataset: sbd.WaveformDataset, split: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Per trace: any sample NaN or Inf; every sample zero (a non-finite trace is not also zero)."""
    n = len(dataset)
    flags = BlockFlags(n)
    what = f"{split + ' split: ' if split else ''}screening waveforms (NaN, Inf, all zero)"
    with reading(dataset), progress.Counter(what, n) as counter:
        for start in range(0, n, SCREEN_BATCH):
            rows = np.arange(start, min(start + SCREEN_BATCH, n))
            flags(rows, dataset.get_waveforms(rows.tolist()))
            counter.update(len(rows))
    return flags.nonfinite, flags.zero


class BlockFlags:
    """Waveform verdicts gathered block by block from whatever reads the waveforms."""

    def __init__(self, n_rows: int) -> None:
        self.nonfinite = np.zeros(n_rows, dtype=bool)
        self.zero = np.zeros(n_rows, dtype=bool)
        self.seen = np.zeros(n_rows, dtype=bool)

    def __call__(self, rows: np.ndarray, block: np.ndarray) -> None:
        """Flag the rows of a (B, C, N) block as seisbench's get_waveforms returned it."""
        flat = np.asarray(block).reshape(len(rows), -1)
        finite = np.isfinite(flat).all(axis=1)
        self.nonfinite[rows] = ~finite
        self.zero[rows] = finite & ~flat.any(axis=1)
        self.seen[rows] = True


@contextmanager
def reading(dataset: sbd.WaveformDataset) -> Iterator[None]:
    """Reading the dataset's waveforms; an unreadable file is a one-line error."""
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


def missing_problems(dataset: sbd.WaveformDataset, missing: np.ndarray) -> list[Problem]:
    """Rows naming no waveform as a problem; training leaves them out and counts them."""
    if not missing.any():
        return []
    file, example = missing_example(dataset, missing)
    meaning = f"names no waveform in {file.name} (e.g. {example!r}): left out"
    return [Problem("trace_name", int(missing.sum()), meaning)]


def waveform_problems(nonfinite: np.ndarray, zero: np.ndarray) -> list[Problem]:
    """Waveform flags as problems; training leaves these traces out and counts them."""
    found = [
        Problem("waveform", int(nonfinite.sum()), "NaN or Inf samples: left out of training"),
        Problem("waveform", int(zero.sum()), "all samples zero: left out of training"),
    ]
    return [p for p in found if p.count]
