"""Screening once per dataset file, one read per split, splits kept across runs, prepare time."""

import dataclasses
import json
import logging
import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from seismic_ml.config import DataConfig, with_model_defaults
from seismic_ml.data import quality
from seismic_ml.data.quality import Screening, ScreenReport, screen
from seismic_ml.data.registry import get_split, load_dataset
from seismic_ml.data.screen_cache import cache_dir, report_path
from seismic_ml.data.waveforms import (
    DEV_SHARE,
    PreloadedWaveforms,
    StreamedWaveforms,
    split_budgets,
    trace_lengths,
)
from seismic_ml.models.registry import build_model
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training import tasks
from seismic_ml.training.tasks import make_task, reuse_prepared_splits
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config
from tests.unit.test_bad_data import damaged, rows, set_column, write
from tests.unit.test_bad_rows import BAD_ROWS, rename

# rows(): 16 train, 8 dev; damaged(): 4 NaN/Inf (3 train, 1 dev), 1 all zero (train);
# BAD_ROWS: 3 rows naming no waveform (rows 0 and 3 in train, 5 in dev; row 5 is also NaN)
EXPECTED = {
    "train": ScreenReport(n_excluded_nonfinite=3, n_excluded_zero=1, n_excluded_missing=2),
    "dev": ScreenReport(n_excluded_nonfinite=0, n_excluded_zero=0, n_excluded_missing=1),
}
GB = 2**30


def bad_dataset(folder: Path) -> Path:
    """NaN, Inf and all-zero traces, and rows naming no waveform, in one dataset."""
    return rename(write(folder, rows(), damaged), BAD_ROWS)


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    """A fresh bad dataset per test (its files are touched and rewritten)."""
    return bad_dataset(tmp_path / "bad")


class ReadCounter:
    """Counts the screening reads a monkeypatched function sees (waveforms and addresses)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.waveforms = self.addresses = 0
        waveform_flags, missing = quality.waveform_flags, quality.missing_waveforms

        def counted_flags(dataset, split=""):
            self.waveforms += 1
            return waveform_flags(dataset, split)

        def counted_missing(dataset):
            self.addresses += 1
            return missing(dataset)

        monkeypatch.setattr(quality, "waveform_flags", counted_flags)
        monkeypatch.setattr(tasks, "read_waveform_flags", counted_flags)
        monkeypatch.setattr(quality, "missing_waveforms", counted_missing)

    @property
    def reads(self) -> int:
        """Screening passes that opened the HDF5 file."""
        return self.waveforms + self.addresses


def split_of(folder: Path, name: str = "train"):
    """One split of a dataset folder, loaded fresh."""
    return get_split(load_dataset(str(folder)), name)


def names(dataset) -> list[str]:
    """The trace names of a dataset's rows, in order."""
    return dataset.metadata["trace_name"].astype(str).tolist()


# ------------------------------------------------------------------ the report kept on disk


def test_second_screening_reads_no_waveform_and_keeps_the_same_rows(
    dataset_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    counter = ReadCounter(monkeypatch)
    with caplog.at_level(logging.WARNING):
        first, report = screen(split_of(dataset_dir), "train")
    warnings = [r.getMessage() for r in caplog.records]
    screening = Screening.start(split_of(dataset_dir), "train")
    path = report_path(screening.key)
    assert counter.reads == 2 and path.parent == cache_dir() and path.is_file()
    assert report == EXPECTED["train"] and len(first) == 16 - 2 - 4
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again, report_again = screen(split_of(dataset_dir), "train")
    assert counter.reads == 2 and screening.origin == "cached"  # no file opened to screen
    assert names(again) == names(first) and report_again == report
    assert [r.getMessage() for r in caplog.records] == warnings  # the same warnings again
    kept = json.loads(path.read_text())
    assert kept["counts"] == {"bad_rate": 0, "missing": 2, "nonfinite": 3, "zero": 1}
    assert kept["excluded"]["zero"] == [7]  # tr10, the 8th train row
    assert kept["trace_names"]["zero"] == ["bucket0$7,:3,:6000"]  # as the writer named it


def test_screening_without_the_cache_reads_again_and_agrees(
    dataset_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = [screen(split_of(dataset_dir, n), n) for n in ("train", "dev", "train")]
    counter = ReadCounter(monkeypatch)
    fresh = [screen(split_of(dataset_dir, n), n, cache=False) for n in ("train", "dev")]
    assert counter.reads == 4
    for (kept, report), (kept_fresh, report_fresh) in zip(cached, fresh, strict=False):
        assert names(kept) == names(kept_fresh) and report == report_fresh
    assert [r for _, r in fresh] == [EXPECTED["train"], EXPECTED["dev"]]


@pytest.mark.parametrize("change", ["touch hdf5", "rewrite metadata", "other rows"])
def test_a_changed_file_or_other_rows_are_screened_again(
    dataset_dir: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    first = Screening.start(split_of(dataset_dir), "train")
    screen(split_of(dataset_dir), "train")
    counter = ReadCounter(monkeypatch)
    split = split_of(dataset_dir)
    if change == "touch hdf5":
        stat = (dataset_dir / "waveforms.hdf5").stat()
        os.utime(dataset_dir / "waveforms.hdf5", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        split = split_of(dataset_dir)
    elif change == "rewrite metadata":
        set_column(dataset_dir, "source_magnitude", 2.5)
        split = split_of(dataset_dir)
    else:
        split = split.filter(np.arange(len(split)) != 1, inplace=False)  # one NaN row less
    kept, report = screen(split, "train")
    assert counter.reads == 2  # screened again
    assert Screening.start(split, "train").key != first.key
    expected = EXPECTED["train"]
    if change == "other rows":
        expected = dataclasses.replace(expected, n_excluded_nonfinite=2)
    assert report == expected


CORRUPTIONS = {
    "not json": lambda doc: "{not json",
    "a list": lambda doc: "[]",
    "other key": lambda doc: {**doc, "key": "0" * 32},
    "other version": lambda doc: {**doc, "version": 0},
    "row out of range": lambda doc: _excluded(doc, "zero", [99]),
    "rows repeat": lambda doc: _excluded(doc, "nonfinite", [1, 1, 3]),
    "negative row": lambda doc: _excluded(doc, "zero", [-1]),
    "not integers": lambda doc: _excluded(doc, "zero", ["8"]),
    "names differ": lambda doc: {**doc, "trace_names": {**doc["trace_names"], "zero": ["tr0"]}},
    "count differs": lambda doc: {**doc, "counts": {**doc["counts"], "zero": 5}},
    "two reasons": lambda doc: _excluded(
        doc, "zero", doc["excluded"]["nonfinite"][:1], doc["trace_names"]["nonfinite"][:1]
    ),
    "fields missing": lambda doc: {k: v for k, v in doc.items() if k != "excluded"},
    "huge": lambda doc: " " * (2**21) + json.dumps(doc),
}


def _excluded(doc: dict, reason: str, rows: list, names: list | None = None) -> dict:
    """The document with one reason's rows (and optionally names) replaced."""
    changed = {**doc, "excluded": {**doc["excluded"], reason: rows}}
    if names is not None:
        changed["trace_names"] = {**doc["trace_names"], reason: names}
        changed["counts"] = {**doc["counts"], reason: len(rows)}
    return changed


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_or_foreign_cache_file_is_ignored_and_rewritten(
    dataset_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    corruption: str,
) -> None:
    kept, report = screen(split_of(dataset_dir), "train")
    path = report_path(Screening.start(split_of(dataset_dir), "train").key)
    good = json.loads(path.read_text())
    bad = CORRUPTIONS[corruption](good)
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    counter = ReadCounter(monkeypatch)
    with caplog.at_level(logging.WARNING):
        again, report_again = screen(split_of(dataset_dir), "train")
    assert counter.reads == 2 and f"ignoring screening cache {path}" in caplog.text
    assert names(again) == names(kept) and report_again == report
    assert json.loads(path.read_text()) == good  # written again, whole


def test_a_cache_folder_that_cannot_be_written_is_a_warning(
    dataset_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = dataset_dir / "blocked"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setattr("seismic_ml.data.screen_cache.cache_dir", lambda: blocked / "screening")
    with caplog.at_level(logging.WARNING):
        kept, report = screen(split_of(dataset_dir), "train")
    assert report == EXPECTED["train"] and "could not keep the screening report" in caplog.text


def test_a_write_leaves_no_temporary_file(dataset_dir: Path) -> None:
    screen(split_of(dataset_dir), "dev")
    assert not list(cache_dir().glob(".*.tmp"))


# ------------------------------------------------------------------ one read per split


def prepared(folder: Path, budget: str, model_type: str = "amag_v2", **data: object):
    """A task's prepared splits and its train and validation batches, as training builds them."""
    cfg = with_model_defaults(tiny_run_config(model_type, dataset=str(folder)))
    data_cfg = dataclasses.replace(cfg.data, memory_budget=budget, **data)
    cfg = dataclasses.replace(cfg, data=data_cfg)
    task = make_task(cfg)
    splits = task.prepare(lambda: load_dataset(str(folder)))
    return splits, task.windows(splits, build_model(cfg.model_type, cfg.model))


def all_batches(windows) -> tuple[torch.Tensor, torch.Tensor]:
    """Every window and target of a split, in order."""
    batch = windows[list(range(len(windows)))]
    return batch["X"], batch["y"]


@pytest.mark.parametrize("model_type", ["amag_v2", "phasenet"])
def test_preloaded_streamed_and_cached_splits_keep_the_same_rows_and_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_type: str
) -> None:
    outcomes = {}
    folders = {"preloaded": bad_dataset(tmp_path / "a"), "streamed": bad_dataset(tmp_path / "b")}
    folders["cached"] = folders["preloaded"]  # screened by the preloaded run before
    for run, budget in [("preloaded", "1GB"), ("cached", "1GB"), ("streamed", "0")]:
        folder = folders[run]
        counter = ReadCounter(monkeypatch)
        splits, windows = prepared(folder, budget, model_type)
        outcomes[run] = (splits, windows, counter.waveforms)
    for run, (splits, windows, _) in outcomes.items():
        reference, reference_windows, _ = outcomes["preloaded"]
        for name, ours, theirs in zip(("train", "dev"), windows, reference_windows, strict=True):
            split, expected = getattr(splits, name), getattr(reference, name)
            assert names(split.dataset) == names(expected.dataset), (run, name)
            assert split.report == EXPECTED[name]
            assert all(torch.equal(a, b) for a, b in zip(all_batches(ours), all_batches(theirs)))
    kinds = {run: type(s.train.source) for run, (s, _, _) in outcomes.items()}
    assert kinds == {
        "preloaded": PreloadedWaveforms,
        "cached": PreloadedWaveforms,
        "streamed": StreamedWaveforms,
    }
    assert [outcomes[r][2] for r in ("preloaded", "cached", "streamed")] == [0, 0, 2]
    origins = {run: (s.train.origin, s.dev.origin) for run, (s, _, _) in outcomes.items()}
    assert origins["preloaded"] == origins["streamed"] == ("screened", "screened")
    assert origins["cached"] == ("cached", "cached")


def test_preload_sees_every_block_and_the_selected_rows_cut_the_same_windows(
    tiny_dataset: str,
) -> None:
    train = get_split(load_dataset(tiny_dataset), "train")
    lengths = trace_lengths(train, 6000)
    seen = quality.BlockFlags(len(train))
    full = PreloadedWaveforms.read(train, lengths, 3, on_block=seen)
    assert seen.seen.all() and not seen.nonfinite.any()
    keep = np.arange(len(train)) % 4 != 1
    kept = train.filter(keep, inplace=False)
    selected, fresh = full.select(keep), PreloadedWaveforms.read(kept, lengths[keep], 3)
    rows = np.arange(int(keep.sum()))
    start, lo, hi = rows * 7 - 100, np.zeros_like(rows), lengths[keep]
    np.testing.assert_array_equal(
        selected.windows(rows, lo, hi, start, 3001), fresh.windows(rows, lo, hi, start, 3001)
    )
    assert selected.flat is full.flat  # no copy


@pytest.mark.parametrize(
    "train_bytes, dev_bytes, budget, expected",
    [
        (60, 10, 100, (100, 40)),  # both fit: train first, dev the rest
        (95, 20, 100, (100, 5)),  # train fits, dev streams in what is left
        (500, 5, 100, (95, 5)),  # train streams: dev keeps what it needs
        (500, 50, 100, (100 - 100 * DEV_SHARE, 100 * DEV_SHARE)),  # ... up to its share
        (500, 50, 0, (0, 0)),  # 0: always stream
    ],
)
def test_dev_keeps_a_share_of_the_budget_when_train_streams(
    train_bytes: int, dev_bytes: int, budget: int, expected: tuple[int, int]
) -> None:
    assert split_budgets(train_bytes, dev_bytes, budget) == tuple(int(e) for e in expected)


def test_a_streamed_dev_split_keeps_the_traces_it_read_first(tiny_dataset: str) -> None:
    dev = get_split(load_dataset(tiny_dataset), "dev")
    lengths = trace_lengths(dev, 6000)
    one = 3 * int(lengths.max()) * 4
    source = StreamedWaveforms(dev, lengths, 3, budget=3 * one, evict=False)
    zeros = np.zeros(4, dtype=np.int64)
    for epoch in range(2):
        for first in range(0, 8, 4):
            rows = np.arange(first, first + 4)
            source.windows(rows, zeros, lengths[rows], zeros, 100)
        assert list(source.cache) == [0, 1, 2], epoch  # the first three stay, epoch after epoch


@pytest.mark.parametrize("dev_fits", [True, False])
def test_when_train_streams_dev_keeps_its_share(tmp_path: Path, dev_fits: bool) -> None:
    folder = write(tmp_path / "d", [*rows(30, split="train"), *rows(2, split="dev")])
    trace = 3 * 6000 * 4
    budget = 25 * trace if dev_fits else 15 * trace  # train: 30 traces; dev: 2
    splits, _ = prepared(folder, str(budget))
    train, dev = splits.train.source, splits.dev.source
    assert isinstance(train, StreamedWaveforms) and train.evict
    if dev_fits:
        assert isinstance(dev, PreloadedWaveforms) and train.budget == budget - dev.nbytes
    else:  # dev streams in its share, keeping the traces it reads first
        assert isinstance(dev, StreamedWaveforms) and not dev.evict
        assert dev.budget == int(budget * DEV_SHARE) and train.budget == budget - dev.budget


# ------------------------------------------------------------------ kept across runs


def test_reuse_keeps_prepared_splits_while_the_data_settings_and_files_hold(
    dataset_dir: Path,
) -> None:
    loads = []

    def prepare(**data: object):
        cfg = tiny_run_config(dataset=str(dataset_dir))
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data))
        return make_task(cfg).prepare(lambda: loads.append(1) or load_dataset(str(dataset_dir)))

    with reuse_prepared_splits():
        first = prepare()
        second = prepare(label_sigma=10)  # a label setting: the splits are the same
        assert len(loads) == 1 and second.train.source is first.train.source
        assert (second.train.origin, second.dev.origin) == ("reused", "reused")
        assert second.started > first.started and second.screening == first.screening
        other = prepare(max_traces=12)
        assert len(loads) == 2 and other.train.source is not first.train.source
        set_column(dataset_dir, "source_magnitude", 2.5)  # the file changed: read again
        prepare(max_traces=12)
        assert len(loads) == 3
    prepare(max_traces=12)
    assert len(loads) == 4  # outside the context nothing is kept


def test_data_key_names_what_decides_the_splits() -> None:
    cfg = tiny_run_config()
    key = tasks.data_key(cfg)
    same = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, label_sigma=5))
    assert tasks.data_key(same) == key
    for change in [
        {"dataset": "synthetic:300"},
        {"max_traces": 5},
        {"magnitude_type": "ML"},
        {"memory_budget": "1GB"},
    ]:
        other = dataclasses.replace(cfg, data=DataConfig(**{**vars(cfg.data), **change}))
        assert tasks.data_key(other) != key, change


# ------------------------------------------------------------------ what a run logs


def test_a_run_logs_its_prepare_time_and_screening_keys(dataset_dir: Path) -> None:
    runs = [
        mlflow.get_run(train(tiny_run_config(dataset=str(dataset_dir)), MlflowRecorder()).run_id)
    ]
    runs.append(
        mlflow.get_run(train(tiny_run_config(dataset=str(dataset_dir)), MlflowRecorder()).run_id)
    )
    for run, origin in zip(runs, ["screened", "cached"], strict=True):
        params = run.data.params
        [prepare] = mlflow.MlflowClient().get_metric_history(run.info.run_id, "data/prepare_s")
        assert prepare.step == 0 and 0 < prepare.value < 600
        assert params["data.train_screening"] == params["data.dev_screening"] == origin
        assert report_path(params["data.train_screening_key"]).is_file()
        assert report_path(params["data.dev_screening_key"]).is_file()
        assert params["data.train_waveforms"] == params["data.dev_waveforms"] == "preloaded"
        assert params["data.n_excluded_nonfinite"] == "3"  # row 5: naming no waveform first
        assert params["data.n_excluded_zero"] == "1" and params["data.n_excluded_missing"] == "3"
    assert (
        runs[0].data.params["data.train_screening_key"]
        == (runs[1].data.params["data.train_screening_key"])
    )


def test_trials_in_one_worker_reuse_their_splits(tiny_dataset: str) -> None:
    with reuse_prepared_splits():
        ids = [
            train(tiny_run_config(dataset=tiny_dataset, seed=s), MlflowRecorder()).run_id
            for s in (1, 2)
        ]
    params = [mlflow.get_run(i).data.params for i in ids]
    assert params[1]["data.train_screening"] == params[1]["data.dev_screening"] == "reused"
    assert params[0]["data.train_screening_key"] == params[1]["data.train_screening_key"]


def test_a_reused_split_is_not_digested_again(
    tiny_dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dataset input's digest comes with the prepared split: a reused trial logs its
    inputs without hashing every metadata row again, and logs the same digest."""
    from seismic_ml.tracking import datasets

    digested = []
    real = datasets.metadata_digest
    monkeypatch.setattr(datasets, "metadata_digest", lambda m: digested.append(1) or real(m))
    with reuse_prepared_splits():
        ids = [
            train(tiny_run_config(dataset=tiny_dataset, seed=s), MlflowRecorder()).run_id
            for s in (1, 2)
        ]
    assert digested == []  # both runs took the digest computed when the splits were prepared
    inputs = [mlflow.get_run(i).inputs.dataset_inputs for i in ids]
    digests = [{d.dataset.name: d.dataset.digest for d in run} for run in inputs]
    assert digests[0] == digests[1] and len(digests[0]) == 2
