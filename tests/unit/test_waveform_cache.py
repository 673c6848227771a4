"""A preloaded split is read once per dataset file: later starts map the copy the first kept."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from seismic_ml.data import waveform_cache
from seismic_ml.data.waveforms import PreloadedWaveforms
from tests.unit.test_screen_cache import EXPECTED, all_batches, bad_dataset, names, prepared


class Reads:
    """Counts the preloads that read waveforms from HDF5."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        read = PreloadedWaveforms.read.__func__

        def counted(cls, *args, **kwargs):
            self.count += 1
            return read(cls, *args, **kwargs)

        monkeypatch.setattr(PreloadedWaveforms, "read", classmethod(counted))


def copies() -> set[Path]:
    """Every waveform copy kept in the session's seisbench cache."""
    return set((Path(os.environ["SEISBENCH_CACHE_ROOT"]) / waveform_cache.FOLDER).glob("*.npy"))


def same_windows(first, second) -> bool:
    return all(
        torch.equal(a, b)
        for ours, theirs in zip(first, second, strict=True)
        for a, b in zip(all_batches(ours), all_batches(theirs), strict=True)
    )


@pytest.mark.parametrize("model_type", ["amag_v2", "phasenet"])
def test_a_later_start_maps_the_kept_rows_and_cuts_the_same_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_type: str
) -> None:
    folder = bad_dataset(tmp_path / "bad")  # left-out rows in both splits
    reads = Reads(monkeypatch)
    first_splits, first = prepared(folder, "1GB", model_type)
    assert reads.count == 2
    second_splits, second = prepared(folder, "1GB", model_type)
    assert reads.count == 2, "a later start read the waveforms again"
    for name in ("train", "dev"):
        split = getattr(second_splits, name)
        assert isinstance(split.source.flat, np.memmap)
        assert names(split.dataset) == names(getattr(first_splits, name).dataset)
        assert split.report == EXPECTED[name]
    assert same_windows(first, second)


def test_a_changed_file_is_read_again_and_a_foreign_copy_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = bad_dataset(tmp_path / "bad")
    _, reference = prepared(folder, "1GB")
    before = copies()
    hdf5 = next(folder.glob("waveforms*.hdf5"))
    os.utime(hdf5, ns=(hdf5.stat().st_atime_ns, hdf5.stat().st_mtime_ns + 10**9))
    reads = Reads(monkeypatch)
    prepared(folder, "1GB")  # the kept copies belong to the file as it was
    fresh = copies() - before
    assert reads.count == 2 and len(fresh) == 2
    for copy in fresh:
        np.save(copy, np.zeros((3, 5), dtype=np.float32))  # another layout
    with caplog.at_level(logging.WARNING):
        _, again = prepared(folder, "1GB")
    assert reads.count == 4 and "ignoring the waveform copy" in caplog.text
    assert same_windows(reference, again)
    prepared(folder, "1GB")
    assert reads.count == 4  # written again, mapped now


def test_no_copy_is_kept_where_it_would_crowd_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = bad_dataset(tmp_path / "bad")
    monkeypatch.setattr(waveform_cache, "MAX_DISK_SHARE", 0.0)
    reads, before = Reads(monkeypatch), copies()
    prepared(folder, "1GB")
    prepared(folder, "1GB")
    assert reads.count == 4 and copies() == before
