"""Progress from the first second: loading, screening and reading say what they do, how far."""

import pytest

from seismic_ml import progress
from seismic_ml.data.quality import waveform_flags
from seismic_ml.data.registry import get_split, load_dataset
from tests.unit.test_screen_cache import bad_dataset, prepared


def test_a_long_read_says_where_it_is_without_a_terminal(monkeypatch, capsys) -> None:
    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # every update is "long enough"
    with progress.Counter("train split: reading", 4) as counter:
        counter.update(2)
        counter.update(2)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "train split: reading (4 traces)"
    assert lines[1:3] == [
        "train split: reading: 2/4 traces (50%)",
        "train split: reading: 4/4 traces (100%)",
    ]
    assert lines[3].startswith("train split: reading: 4 traces in ")


def test_a_short_read_is_one_line_and_quiet_is_none(monkeypatch, capsys) -> None:
    with progress.Counter("dev split: reading", 3) as counter:
        counter.update(3)
    assert capsys.readouterr().err.splitlines() == ["dev split: reading (3 traces)"]
    monkeypatch.setitem(progress._settings, "quiet", True)
    with progress.Counter("dev split: reading", 3) as counter:
        counter.update(3)
    assert capsys.readouterr().err == ""


def test_a_training_start_says_it_loads_screens_and_reads(tmp_path, tiny_dataset, capsys) -> None:
    folder = bad_dataset(tmp_path / "fresh")  # no screening report, no waveform copy yet
    prepared(folder, "1GB")
    err = capsys.readouterr().err
    assert f"loading {folder}" in err
    for split in ("train", "dev"):
        assert f"{split} split: reading" in err and "into memory" in err
    prepared(folder, "1GB")  # a later start maps what the first kept
    err = capsys.readouterr().err
    for split in ("train", "dev"):
        assert f"{split} split: waveforms mapped from the copy kept in" in err
    waveform_flags(get_split(load_dataset(tiny_dataset), "test"), "test")
    assert "test split: screening waveforms (NaN, Inf, all zero)" in capsys.readouterr().err


@pytest.mark.parametrize("nbytes, text", [(5 * 2**20, "5 MB"), (3 * 2**29, "1.5 GB")])
def test_sizes_read_like_a_person_writes_them(nbytes: int, text: str) -> None:
    assert progress.size(nbytes) == text
