"""Metadata rows naming no waveform in the HDF5 file are left out and counted, like NaN traces."""

import logging
import shutil
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import seisbench.data as sbd

from seismic_ml.data.quality import ScreenReport, missing_waveforms, screen
from seismic_ml.data.registry import load_dataset
from seismic_ml.errors import SeismicMLError
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config
from tests.unit.test_bad_data import (
    DATA_FORMAT,
    N_SAMPLES,
    damaged,
    inspect,
    n_runs,
    one_line,
    problem_rows,
    rows,
    write,
)

# rows() puts its 16 train traces in bucket0 and its 8 dev traces in bucket1 (i % 3 == 2: dev)
PAST_END, NO_BUCKET, TOO_LONG = "bucket0$99999,:3,:6000", "bucket9$3,:3,:6000", "bucket1$1,:3,:9000"
BAD_ROWS = {0: PAST_END, 3: NO_BUCKET, 5: TOO_LONG}  # two train rows, one dev row


def rename(folder: Path, names: dict[int, str]) -> Path:
    """Point some metadata rows' trace_name elsewhere, as a hand-edited metadata.csv does."""
    meta = pd.read_csv(folder / "metadata.csv")
    for row, name in names.items():
        meta.loc[row, "trace_name"] = name
    meta.to_csv(folder / "metadata.csv", index=False)
    return folder


def copy_of(source: Path, folder: Path) -> Path:
    """A fresh copy of a dataset folder (module fixtures stay untouched)."""
    shutil.copytree(source, folder)
    return folder


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 good traces: 16 train in bucket0, 8 dev in bucket1."""
    return write(tmp_path_factory.mktemp("rows") / "clean", rows())


@pytest.fixture(scope="module")
def bad_rows(clean: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clean set with an index past its bucket, a missing bucket and a too-long slice."""
    return rename(copy_of(clean, tmp_path_factory.mktemp("rows") / "bad"), BAD_ROWS)


# ------------------------------------------------------------------ the address check


@pytest.mark.parametrize(
    "name",
    [
        PAST_END,
        "bucket0$16,:3,:6000",  # one past the last of bucket0's 16 rows
        "bucket0$-17,:3,:6000",
        NO_BUCKET,
        "no_such_trace",  # a plain dataset name that the file does not hold
        "bucket0$2,:3,:9000",  # more samples than the stored trace has
        "bucket0$2,:4,:6000",  # more components than stored
        "bucket0$2,:3,6000:",  # selects nothing
        "bucket0$x,:3,:6000",  # not an index
        "bucket0$2,:3,:6000,:",  # more indices than the block has axes
    ],
)
def test_screen_leaves_out_a_row_naming_no_waveform(
    clean: Path, tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = rename(copy_of(clean, tmp_path / "d"), {4: name})
    with caplog.at_level(logging.WARNING):
        kept, report = screen(load_dataset(str(folder)), "train")
    assert report == ScreenReport(n_excluded_missing=1)
    assert report.to_params()["data.n_excluded_missing"] == "1"
    assert len(kept) == 23 and name not in set(kept.metadata["trace_name"])
    assert kept.get_waveforms().shape == (23, 3, N_SAMPLES)  # the good rows all read
    [warning] = [r.getMessage() for r in caplog.records if "no waveform" in r.getMessage()]
    assert one_line(warning) == (
        f"train split: 1 traces name no waveform in {folder / 'waveforms.hdf5'} "
        f"(e.g. {name!r}) and are left out"
    )


def test_good_addresses_are_all_kept(clean: Path, tmp_path: Path) -> None:
    folder = rename(copy_of(clean, tmp_path / "d"), {0: "bucket0$-16,:3,:6000", 1: "bucket0$15"})
    dataset = load_dataset(str(folder))
    assert not missing_waveforms(dataset).any()
    kept, report = screen(dataset)
    assert len(kept) == 24 and report == ScreenReport()


def test_plain_dataset_names_are_checked_too(tmp_path: Path) -> None:
    """A bucket of one trace is stored as a dataset named after the trace (no '$' address)."""
    folder = tmp_path / "plain"
    folder.mkdir()
    with sbd.WaveformDataWriter(folder / "metadata.csv", folder / "waveforms.hdf5") as writer:
        writer.data_format, writer.bucket_size = DATA_FORMAT, 1  # (bucketer=None fails in 0.12)
        for i, row in enumerate(rows(6)):
            writer.add_trace({"trace_name": f"tr{i}", **row}, np.ones((3, N_SAMPLES), np.float32))
    rename(folder, {2: "tr99"})
    assert missing_waveforms(load_dataset(str(folder))).tolist() == [0, 0, 1, 0, 0, 0]


def test_each_chunk_is_checked_against_its_own_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for chunk, n in (("A", 4), ("B", 2)):  # chunk B's file holds a bucket0 of two rows only
        meta, waves = tmp_path / f"metadata{chunk}.csv", tmp_path / f"waveforms{chunk}.hdf5"
        with sbd.WaveformDataWriter(meta, waves) as writer:
            writer.data_format = DATA_FORMAT
            for i, row in enumerate(rows(n, split="train")):
                writer.add_trace({"trace_name": f"{chunk}{i}", **row}, np.ones((3, N_SAMPLES)))
    rename_in = pd.read_csv(tmp_path / "metadataB.csv")
    rename_in.loc[1, "trace_name"] = "bucket0$3,:3,:6000"  # in chunk A's file, not in B's
    rename_in.to_csv(tmp_path / "metadataB.csv", index=False)
    dataset = sbd.WaveformDataset(tmp_path, sampling_rate=100, component_order="ZNE")
    assert missing_waveforms(dataset).tolist() == [0, 0, 0, 0, 0, 1]
    with caplog.at_level(logging.WARNING):
        kept, report = screen(dataset, "train")
    assert len(kept) == 5 and report.n_excluded_missing == 1
    assert f"1 traces name no waveform in {tmp_path / 'waveformsB.hdf5'}" in caplog.text


def test_screening_a_million_rows_of_addresses_takes_seconds(clean: Path) -> None:
    dataset = load_dataset(str(clean))
    rows_960k = np.tile(np.arange(24), 40_000)
    dataset._metadata = dataset.metadata.iloc[rows_960k].reset_index(drop=True)
    dataset.metadata.loc[::1000, "trace_name"] = PAST_END
    start = time.perf_counter()
    missing = missing_waveforms(dataset)
    assert time.perf_counter() - start < 60  # 2 to 6 s on 2 busy cores: no per-row parse
    assert missing.sum() == 960 and missing[::1000].all()


# ------------------------------------------------------------------ training and evaluation


@pytest.fixture(scope="module")
def bad_rows_run(bad_rows: Path) -> mlflow.entities.Run:
    """A magnitude training run on the dataset with three rows naming no waveform."""
    return mlflow.get_run(train(tiny_run_config(dataset=str(bad_rows)), MlflowRecorder()).run_id)


def test_rows_naming_no_waveform_are_left_out_of_a_finished_run(
    bad_rows_run: mlflow.entities.Run,
) -> None:
    params, metrics = bad_rows_run.data.params, bad_rows_run.data.metrics
    assert bad_rows_run.info.status == "FINISHED"
    assert params["data.n_excluded_missing"] == "3"
    assert params["data.n_excluded_nonfinite"] == params["data.n_excluded_zero"] == "0"
    assert params["data.n_train_windows"] == "14" and params["data.n_val_windows"] == "7"
    assert np.isfinite(metrics["best/val_loss"]) and np.isfinite(metrics["train/loss"])


def test_evaluation_counts_rows_naming_no_waveform(
    bad_rows: Path, bad_rows_run: mlflow.entities.Run
) -> None:
    from seismic_ml.tracking.evaluation_run import evaluate_run

    result = evaluate_run(
        "magnitude", run_id=bad_rows_run.info.run_id, dataset=str(bad_rows), split="dev"
    )
    params = mlflow.get_run(result.run_id).data.params
    assert params["eval.n_excluded_missing"] == "1"
    assert result.metrics and all(np.isfinite(v) for v in result.metrics.values()), result.metrics


def test_a_split_of_rows_all_naming_no_waveform_is_one_line_and_no_run(
    clean: Path, tmp_path: Path
) -> None:
    dev = {i: f"bucket9${i},:3,:6000" for i in range(2, 24, 3)}
    folder = rename(copy_of(clean, tmp_path / "d"), dev)
    before = n_runs()
    with pytest.raises(SeismicMLError) as info:
        train(tiny_run_config(dataset=str(folder)), MlflowRecorder())
    assert one_line(str(info.value)) == (
        f"dev split: every one of its 8 traces names no waveform in {folder / 'waveforms.hdf5'} "
        "(e.g. 'bucket9$2,:3,:6000')"
    )
    assert n_runs() == before


def test_a_split_unusable_by_missing_and_nan_traces_together_says_both(tmp_path: Path) -> None:
    folder = write(tmp_path / "d", rows(), lambda i: damaged(1) if i % 3 == 2 else None)
    rename(folder, {2: NO_BUCKET, 5: PAST_END})
    dataset = load_dataset(str(folder))
    dev = dataset.filter(dataset.metadata["split"] == "dev", inplace=False)
    with pytest.raises(SeismicMLError) as info:
        screen(dev, "dev")
    assert one_line(str(info.value)) == (
        "dev split: every one of its 8 traces is unusable "
        "(6 with NaN or Inf samples, 0 all zero, 2 naming no waveform)"
    )


# ------------------------------------------------------------------ data inspect


def test_inspect_lists_rows_naming_no_waveform_and_exits_3(bad_rows: Path, tmp_path: Path) -> None:
    result = inspect(bad_rows, tmp_path)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert (
        "waveforms: 21 read, 0 with NaN or Inf samples, 0 all zero, "
        "3 rows name no waveform (not read)" in result.output
    )
    assert problem_rows(result.output) == [
        ("trace_name", "3", f"names no waveform in waveforms.hdf5 (e.g. {PAST_END!r}): left out")
    ]
    assert list(tmp_path.glob("*.png"))  # drawn from the good rows


def test_inspect_with_no_row_naming_a_waveform_exits_3_without_figure(
    clean: Path, tmp_path: Path
) -> None:
    folder = rename(copy_of(clean, tmp_path / "d"), {i: "gone" for i in range(24)})
    result = inspect(folder, tmp_path)
    assert result.exit_code == 3, result.output
    assert problem_rows(result.output) == [
        ("trace_name", "24", "names no waveform in waveforms.hdf5 (e.g. 'gone'): left out")
    ]
    assert "no figure: no trace is usable" in result.output
