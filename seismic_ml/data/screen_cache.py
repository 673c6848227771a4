"""Screening verdicts kept per dataset file: which rows of a split are left out and why.

Screening reads every waveform of a split; its verdicts depend only on the dataset's files and
the rows screened. They are kept as JSON (never pickle) under
`<SEISBENCH_CACHE_ROOT>/seismic_ml_screening/<key>.json`, the key a digest of the files'
identity (path, size and modification time of every metadata*.csv and waveforms*.hdf5) and
of the screened rows' trace names: a touched or rewritten file gives another key. A cache
file is validated field by field before it is used; one that is corrupt, foreign or does not
fit the rows is ignored and written again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seisbench
import seisbench.data as sbd

from seismic_ml.data.registry import COMPONENT_ORDER, SAMPLING_RATE, source_rates

log = logging.getLogger(__name__)
FORMAT = "seismic_ml.screening"
VERSION = 1  # raise when screening decides differently: older reports are then screened again
FOLDER = "seismic_ml_screening"
REASONS = ("bad_rate", "missing", "nonfinite", "zero")  # in the order screening decides them
BYTES_PER_ROW = 200  # a report larger than this per row (plus MAX_EXTRA) is not read
MAX_EXTRA = 2**20


@dataclass
class ScreenFlags:
    """Per row of a split, why it is left out (one reason at most); waveforms: whether the
    waveform verdicts (nonfinite, zero) are known yet or only the metadata ones."""

    bad_rate: np.ndarray  # a sampling rate that cannot be resampled to 100 Hz
    missing: np.ndarray  # trace_name names no waveform in the HDF5 file
    nonfinite: np.ndarray  # NaN or Inf samples
    zero: np.ndarray  # every sample zero
    waveforms: bool = True

    @classmethod
    def none(cls, n_rows: int, waveforms: bool = True) -> ScreenFlags:
        """No row left out."""
        return cls(*(np.zeros(n_rows, dtype=bool) for _ in REASONS), waveforms=waveforms)

    @property
    def readable(self) -> np.ndarray:
        """Rows whose waveform can be read (a usable rate, an address in the file)."""
        return ~(self.bad_rate | self.missing)

    @property
    def keep(self) -> np.ndarray:
        """Rows kept for training."""
        return self.readable & ~(self.nonfinite | self.zero)

    def excluded(self) -> dict[str, np.ndarray]:
        """Row positions left out, per reason."""
        return {reason: np.flatnonzero(getattr(self, reason)) for reason in REASONS}


def cache_dir() -> Path:
    """Where screening reports are kept: beside seisbench's datasets."""
    return Path(seisbench.cache_root) / FOLDER


def dataset_identity(path: Path | str) -> dict[str, Any]:
    """Path, size and modification time (ns) of every metadata and waveform file of a dataset."""
    folder = Path(path).resolve()
    files = sorted([*folder.glob("metadata*.csv"), *folder.glob("waveforms*.hdf5")])
    stats = [(f.name, f.stat()) for f in files if f.is_file()]
    return {
        "path": str(folder),
        "files": [[name, s.st_size, s.st_mtime_ns] for name, s in stats],
    }


def rows_digest(metadata: pd.DataFrame) -> str:
    """A digest of the rows screened: their trace chunks and names, in order."""
    digest = hashlib.sha256(str(len(metadata)).encode())
    if "trace_chunk" in metadata.columns:
        digest.update("\n".join(metadata["trace_chunk"].fillna("").astype(str)).encode())
    digest.update(b"\x00")
    digest.update("\n".join(metadata["trace_name"].astype(str)).encode())
    return digest.hexdigest()


def metadata_digest(metadata: pd.DataFrame) -> str:
    """Eight hex digits over every row's values (pandas' row hashes) and the column names."""
    digest = hashlib.sha256("\x00".join(map(str, metadata.columns)).encode())
    digest.update(pd.util.hash_pandas_object(metadata, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:8]


def screening_identity(dataset: sbd.WaveformDataset) -> dict[str, Any]:
    """Everything the verdicts on a split's rows depend on."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "sampling_rate": SAMPLING_RATE,
        "component_order": COMPONENT_ORDER,
        "dataset": dataset_identity(dataset.path),
        "rows": rows_digest(dataset.metadata),
    }


def screening_key(identity: dict[str, Any]) -> str:
    """The cache key of an identity: 32 hex digits."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def report_path(key: str) -> Path:
    """The cache file of a key."""
    return cache_dir() / f"{key}.json"


def load_flags(key: str, identity: dict[str, Any], metadata: pd.DataFrame) -> ScreenFlags | None:
    """The kept verdicts of a key, validated against these rows; None when absent or unusable."""
    path = report_path(key)
    try:
        if path.stat().st_size > BYTES_PER_ROW * len(metadata) + MAX_EXTRA:
            raise ValueError("larger than a report of these rows can be")
        document = json.loads(path.read_text(encoding="utf-8"))
        return flags_from_document(document, key, identity, metadata)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        log.warning("ignoring screening cache %s (%s): screening again", path, exc)
        return None


def flags_from_document(
    document: Any, key: str, identity: dict[str, Any], metadata: pd.DataFrame
) -> ScreenFlags:
    """Verdicts from a parsed report; ValueError where any field is not what these rows need."""
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    expected = {"format": FORMAT, "version": VERSION, "key": key, "identity": identity}
    for field, value in expected.items():
        if document.get(field) != value:
            raise ValueError(f"its {field} does not match")
    n_rows = len(metadata)
    if document.get("n_rows") != n_rows:
        raise ValueError("its row count does not match")
    excluded, names, counts = document["excluded"], document["trace_names"], document["counts"]
    flags = ScreenFlags.none(n_rows)
    for reason in REASONS:
        rows = _positions(excluded[reason], n_rows)
        if counts[reason] != len(rows):
            raise ValueError(f"its {reason} count does not match its rows")
        if list(map(str, metadata["trace_name"].iloc[rows])) != names[reason]:
            raise ValueError(f"its {reason} rows name other traces")
        getattr(flags, reason)[rows] = True
    if (sum(getattr(flags, r).astype(np.int8) for r in REASONS) > 1).any():
        raise ValueError("a row is left out for two reasons")
    if not np.array_equal(flags.bad_rate, ~np.isfinite(source_rates(metadata))):
        raise ValueError("its rows of unusable rate are not those of the metadata")
    return flags


def _positions(values: Any, n_rows: int) -> np.ndarray:
    """Strictly increasing row positions inside the split; ValueError otherwise."""
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise ValueError("row positions are not a list of integers")
    rows = np.asarray(values, dtype=np.int64)
    if rows.size and (rows[0] < 0 or rows[-1] >= n_rows or np.any(np.diff(rows) <= 0)):
        raise ValueError("row positions fall outside the split or repeat")
    return rows


def save_flags(
    key: str, identity: dict[str, Any], metadata: pd.DataFrame, flags: ScreenFlags
) -> Path | None:
    """Keep the verdicts, written atomically; a folder that cannot take them is a warning."""
    if not flags.waveforms:
        raise ValueError("only a finished screening is kept")
    path = report_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, json.dumps(flags_document(key, identity, metadata, flags)))
    except OSError as exc:
        log.warning("could not keep the screening report in %s (%s)", path, exc)
        return None
    return path


def flags_document(
    key: str, identity: dict[str, Any], metadata: pd.DataFrame, flags: ScreenFlags
) -> dict[str, Any]:
    """The JSON report: identity, counts, and the rows left out with their trace names."""
    excluded = flags.excluded()
    names = metadata["trace_name"].astype(str).to_numpy()
    return {
        "format": FORMAT,
        "version": VERSION,
        "key": key,
        "identity": identity,
        "n_rows": len(metadata),
        "counts": {reason: int(rows.size) for reason, rows in excluded.items()},
        "excluded": {reason: rows.tolist() for reason, rows in excluded.items()},
        "trace_names": {reason: names[rows].tolist() for reason, rows in excluded.items()},
    }


def write_atomically(path: Path, content: str | bytes) -> None:
    """Write beside the target, then rename over it: a reader sees the old or the new file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide it from others sharing the cache
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
