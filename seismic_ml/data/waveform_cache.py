"""A preloaded split's waveforms kept on disk for the next start, memory-mapped back.

A start that preloads a split reads it from HDF5 (resampled to 100 Hz) into one float32 array
of (channels, samples): seconds to minutes at every start. The array is written once as `.npy`
(arrays only: nothing in it runs) under `<SEISBENCH_CACHE_ROOT>/seismic_ml_waveforms/<key>.npy`,
the key a digest of what decides its content (the dataset files' identity and the split's rows,
as the screening cache keys them); a later start maps it (`np.load(mmap_mode="r")`): no read up
front, the pages come from the OS cache or the disk as training touches them. A copy is kept
only while it takes at most a quarter of the free disk; a file of the wrong shape or type is
ignored and written again. Delete the folder to reclaim the space.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import seisbench
import seisbench.data as sbd

from seismic_ml import progress
from seismic_ml.data.screen_cache import screening_identity

log = logging.getLogger(__name__)
FOLDER = "seismic_ml_waveforms"
VERSION = 1  # raise when the preloaded layout changes: older copies are then read again
MAX_DISK_SHARE = 0.25


def copy_path(dataset: sbd.WaveformDataset) -> Path:
    """The file of the split's rows of this dataset (its files as they are now)."""
    identity = {"version": VERSION, "split": screening_identity(dataset)}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return (
        Path(seisbench.cache_root)
        / FOLDER
        / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.npy"
    )


def load(dataset: sbd.WaveformDataset, n_channels: int, lengths: np.ndarray) -> np.ndarray | None:
    """The kept copy mapped read-only, or None when there is none that fits these traces."""
    path = copy_path(dataset)
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring the waveform copy %s (%s): reading the split again", path, exc)
        return None
    if mapped.dtype != np.float32 or mapped.shape != (n_channels, int(lengths.sum())):
        log.warning("ignoring the waveform copy %s (another layout): reading again", path)
        return None
    return mapped


def save(
    dataset: sbd.WaveformDataset, flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray
) -> Path | None:
    """Keep the traces (flat[:, offset:offset + length] per row, in row order) for later starts,
    written beside the target and renamed over it; too little disk or an error keeps none."""
    path = copy_path(dataset)
    nbytes = int(lengths.sum()) * flat.shape[0] * flat.itemsize
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if nbytes > MAX_DISK_SHARE * shutil.disk_usage(path.parent).free:
            log.info("no copy of the waveforms kept: %s would fill the disk", progress.size(nbytes))
            return None
        _write(path, flat, offsets, lengths)
    except OSError as exc:
        log.warning("could not keep a copy of the waveforms in %s (%s)", path, exc)
        return None
    return path


def _write(path: Path, flat: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
    """The rows' traces one after another into a new .npy, then renamed into place."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    os.close(handle)
    try:
        out = np.lib.format.open_memmap(
            temporary, mode="w+", dtype=np.float32, shape=(flat.shape[0], int(lengths.sum()))
        )
        contiguous = len(offsets) == 0 or (
            offsets[0] == 0 and np.array_equal(offsets[1:], np.cumsum(lengths)[:-1])
        )
        if contiguous:
            out[:] = flat[:, : out.shape[1]]
        else:
            position = 0
            for offset, length in zip(offsets.tolist(), lengths.tolist(), strict=True):
                out[:, position : position + length] = flat[:, offset : offset + length]
                position += length
        out.flush()
        del out
        os.chmod(temporary, 0o644)  # others sharing the cache may map it
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
