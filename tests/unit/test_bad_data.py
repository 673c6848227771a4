"""Bad data is refused in one line or left out and counted, before any run exists."""

import logging
import re
from collections.abc import Callable
from pathlib import Path

import h5py
import mlflow
import numpy as np
import pandas as pd
import pytest
import seisbench.data as sbd
from click.testing import CliRunner

from seismic_ml.cli import cli
from seismic_ml.config import with_model_defaults
from seismic_ml.data.quality import ScreenReport, screen
from seismic_ml.data.registry import load_dataset
from seismic_ml.errors import SeismicMLError
from seismic_ml.models.registry import build_model
from seismic_ml.tracking.training_run import MlflowRecorder
from seismic_ml.training.tasks import make_task
from seismic_ml.training.train import train
from tests.conftest import tiny_run_config

N_SAMPLES = 6000
DATA_FORMAT = {
    "dimension_order": "CW",
    "component_order": "ZNE",
    "sampling_rate": 100,
    "measurement": "velocity",
    "unit": "counts",
}
NAN_TRAIN, NAN_DEV, ZERO_TRAIN = (1, 4, 7), (5,), (10,)  # indices into rows() (train: i % 3 != 2)


def rows(n: int = 24, **overrides: object) -> list[dict]:
    """Two train traces for every dev trace, each with P and S picks and a magnitude."""
    return [
        {
            "split": "dev" if i % 3 == 2 else "train",
            "trace_P_arrival_sample": 1500.0 + 10 * i,
            "trace_S_arrival_sample": 2500.0 + 10 * i,
            "source_magnitude": 1.0 + 0.1 * i,
            "trace_sampling_rate_hz": 100.0,
            **overrides,
        }
        for i in range(n)
    ]


def write(folder: Path, metadata: list[dict], waveform: Callable[[int], np.ndarray] | None = None):
    """A dataset in seisbench's format; waveform(i) overrides trace i's random noise."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    with sbd.WaveformDataWriter(folder / "metadata.csv", folder / "waveforms.hdf5") as writer:
        writer.data_format = DATA_FORMAT
        for i, row in enumerate(metadata):
            data = rng.normal(size=(3, N_SAMPLES)).astype(np.float32)
            if waveform is not None and waveform(i) is not None:
                data = waveform(i)
            writer.add_trace({"trace_name": f"tr{i}", **row}, data)
    return folder


def damaged(i: int) -> np.ndarray | None:
    """NaN in NAN_TRAIN and NAN_DEV traces (one sample, or an Inf), all zero in ZERO_TRAIN."""
    if i in ZERO_TRAIN:
        return np.zeros((3, N_SAMPLES), np.float32)
    if i in NAN_TRAIN + NAN_DEV:
        data = np.ones((3, N_SAMPLES), np.float32)
        data[i % 3, 100 * i] = np.inf if i == 4 else np.nan
        return data
    return None


def set_column(folder: Path, column: str, values: object) -> Path:
    """Rewrite one metadata column (or drop it when values is None)."""
    meta = pd.read_csv(folder / "metadata.csv")
    if values is None:
        meta = meta.drop(columns=[column])
    else:
        meta[column] = values
    meta.to_csv(folder / "metadata.csv", index=False)
    return folder


def n_runs() -> int:
    """Every run in the test store, in every experiment."""
    return len(mlflow.search_runs(search_all_experiments=True))


def one_line(text: str) -> str:
    """The text, asserting it is one line without a traceback."""
    assert "Traceback" not in text and len(text.strip().splitlines()) == 1, text
    return text.strip()


def task_datasets(folder: Path, model_type: str = "amag_v2"):
    """Train set, dev set and task for a dataset folder, built as training builds them."""
    cfg = with_model_defaults(tiny_run_config(model_type, dataset=str(folder)))
    task = make_task(cfg)
    return (*task.datasets(load_dataset(str(folder)), build_model(cfg.model_type, cfg.model)), task)


# ------------------------------------------------------------------ waveforms: NaN, Inf, zero


@pytest.fixture(scope="module")
def nan_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 traces: 3 train and 1 dev with NaN/Inf samples, 1 train all zero."""
    return write(tmp_path_factory.mktemp("bad") / "nan", rows(), damaged)


@pytest.fixture(scope="module")
def nan_run(nan_dataset: Path) -> mlflow.entities.Run:
    """A magnitude training run on the damaged dataset."""
    result = train(tiny_run_config(dataset=str(nan_dataset)), MlflowRecorder())
    return mlflow.get_run(result.run_id)


def test_nan_and_zero_traces_are_left_out_and_counted_in_a_finished_run(
    nan_run: mlflow.entities.Run,
) -> None:
    params, metrics = nan_run.data.params, nan_run.data.metrics
    assert nan_run.info.status == "FINISHED"
    assert params["data.n_excluded_nonfinite"] == str(len(NAN_TRAIN + NAN_DEV))
    assert params["data.n_excluded_zero"] == str(len(ZERO_TRAIN))
    assert params["data.n_train_windows"] == str(16 - len(NAN_TRAIN) - len(ZERO_TRAIN))
    assert params["data.n_val_windows"] == str(8 - len(NAN_DEV))
    assert np.isfinite(metrics["best/val_loss"]) and np.isfinite(metrics["train/loss"])


def test_screen_reads_every_trace_and_keeps_the_good_ones(nan_dataset: Path) -> None:
    dataset = load_dataset(str(nan_dataset))
    kept, report = screen(dataset)
    assert report == ScreenReport(n_excluded_nonfinite=4, n_excluded_zero=1)
    assert len(kept) == 24 - 5 and len(dataset) == 24
    assert np.isfinite(kept.get_waveforms()).all()
    assert report.to_params() == {
        "data.n_excluded_nonfinite": "4",
        "data.n_excluded_zero": "1",
        "data.n_excluded_missing": "0",
    }
    clean, none = screen(kept)
    assert len(clean) == len(kept) and none == ScreenReport()


def test_every_trace_of_a_split_bad_is_one_line_and_no_run(tmp_path: Path) -> None:
    folder = write(tmp_path / "devnan", rows(), lambda i: damaged(1) if i % 3 == 2 else None)
    before = n_runs()
    with pytest.raises(SeismicMLError) as info:
        train(tiny_run_config(dataset=str(folder)), MlflowRecorder())
    message = one_line(str(info.value))
    assert message.startswith("dev split: every one of its 8 traces is unusable")
    assert "8 with NaN or Inf samples" in message
    assert n_runs() == before


# ------------------------------------------------------------------ unreadable waveforms.hdf5


def truncate(file: Path) -> None:
    """Cut the file to half its bytes, as an interrupted copy does."""
    with open(file, "r+b") as handle:
        handle.truncate(file.stat().st_size // 2)


@pytest.fixture(params=["truncated", "garbage"])
def broken_dataset(request: pytest.FixtureRequest, nan_dataset: Path, tmp_path: Path) -> Path:
    """A copy of a real dataset whose waveforms.hdf5 is cut in half or is not HDF5 at all."""
    folder = tmp_path / request.param
    folder.mkdir()
    (folder / "metadata.csv").write_bytes((nan_dataset / "metadata.csv").read_bytes())
    (folder / "waveforms.hdf5").write_bytes((nan_dataset / "waveforms.hdf5").read_bytes())
    if request.param == "truncated":
        truncate(folder / "waveforms.hdf5")
    else:
        (folder / "waveforms.hdf5").write_bytes(b"not hdf5 at all\n" * 1000)
    return folder


def test_unreadable_hdf5_in_training_is_one_line_naming_the_file(broken_dataset: Path) -> None:
    before = n_runs()
    with pytest.raises(SeismicMLError) as info:
        train(tiny_run_config(dataset=str(broken_dataset)), MlflowRecorder())
    message = one_line(str(info.value))
    assert str(broken_dataset / "waveforms.hdf5") in message and "truncated or damaged" in message
    assert n_runs() == before


def test_unreadable_hdf5_in_evaluation_is_one_line_naming_the_file(
    broken_dataset: Path, nan_run: mlflow.entities.Run
) -> None:
    from seismic_ml.tracking.evaluation_run import evaluate_run

    before = n_runs()
    with pytest.raises(SeismicMLError) as info:
        evaluate_run("magnitude", run_id=nan_run.info.run_id, dataset=str(broken_dataset))
    assert str(broken_dataset / "waveforms.hdf5") in one_line(str(info.value))
    assert n_runs() == before


def test_unreadable_hdf5_in_data_inspect_is_one_line_naming_the_file(
    broken_dataset: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli, ["data", "inspect", "--dataset", str(broken_dataset), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    line = one_line(result.output)
    assert line.startswith(f"Error: cannot read {broken_dataset / 'waveforms.hdf5'}")


# ------------------------------------------------------------ metadata: picks, magnitudes, rates


def inspect(folder: Path, out: Path):
    """Run `seismic-ml data inspect` on a folder."""
    return CliRunner().invoke(cli, ["data", "inspect", "--dataset", str(folder), "--out", str(out)])


def problem_rows(output: str) -> list[tuple[str, str, str]]:
    """The rows of the printed problem table as (column, traces, what it means), header excluded."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("problems:"))
    assert lines[start + 1].split() == ["column", "traces", "what", "it", "means"]
    rows = [line.strip() for line in lines[start + 2 :] if line.startswith("  ")]
    return [tuple(re.split(r"\s{2,}", row, maxsplit=2)) for row in rows]


def test_inspect_reports_waveform_counts_and_exits_3(nan_dataset: Path, tmp_path: Path) -> None:
    result = inspect(nan_dataset, tmp_path)
    assert result.exit_code == 3, result.output
    assert "waveforms: 24 read, 4 with NaN or Inf samples, 1 all zero" in result.output
    assert problem_rows(result.output) == [
        ("waveform", "4", "NaN or Inf samples: left out of training"),
        ("waveform", "1", "all samples zero: left out of training"),
    ]
    assert list(tmp_path.glob("*.png"))  # the figure is drawn from the good traces


@pytest.mark.parametrize(
    "column, values, expected",
    [
        ("trace_P_arrival_sample", None, ("24", "no P pick column")),
        ("trace_S_arrival_sample", None, ("24", "no S pick column")),
        ("source_magnitude", ["abc", "2.5"] * 12, ("12", "non-numeric (e.g. 'abc')")),
        ("trace_sampling_rate_hz", [0.0, 100.0, -5.0] * 8, ("16", "zero or negative")),
        ("trace_sampling_rate_hz", ["fast", 100.0] * 12, ("12", "non-numeric (e.g. 'fast')")),
    ],
)
def test_inspect_prints_the_problem_table(
    tmp_path: Path, column: str, values: object, expected: tuple[str, str]
) -> None:
    folder = set_column(write(tmp_path / "d", rows()), column, values)
    result = inspect(folder, tmp_path)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    [(found_column, count, meaning)] = problem_rows(result.output)
    assert (found_column, count) == (column, expected[0]) and meaning.startswith(expected[1])


def test_inspect_reports_a_sampling_rate_missing_everywhere(tmp_path: Path) -> None:
    folder = tmp_path / "norate"
    write(folder, [{k: v for k, v in r.items() if k != "trace_sampling_rate_hz"} for r in rows()])
    with h5py.File(folder / "waveforms.hdf5", "a") as f:
        del f["data_format"]["sampling_rate"]  # now neither metadata nor data_format has a rate
    result = inspect(folder, tmp_path)
    assert result.exit_code == 3, result.output
    [(column, count, meaning)] = problem_rows(result.output)
    assert (column, count) == ("trace_sampling_rate_hz", "24") and meaning.startswith("missing")


def test_clean_dataset_inspects_with_exit_0(tmp_path: Path) -> None:
    result = inspect(write(tmp_path / "clean", rows()), tmp_path)
    assert result.exit_code == 0, result.output
    assert "problems: none found" in result.output


def test_training_warns_about_non_numeric_magnitudes_and_errs_when_none_remain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = set_column(write(tmp_path / "abc", rows()), "source_magnitude", ["abc", 2.5, 3] * 8)
    with caplog.at_level(logging.WARNING):
        train_set, dev_set, _ = task_datasets(folder)
    assert len(train_set) == 8 and len(dev_set) == 8
    assert "the train split: 8 traces have a non-numeric source_magnitude (e.g. 'abc') and are " \
        "left out" in caplog.text  # fmt: skip
    set_column(folder, "source_magnitude", "abc")
    with pytest.raises(SeismicMLError) as info:
        task_datasets(folder)
    assert "16 traces have a non-numeric source_magnitude (e.g. 'abc')" in one_line(str(info.value))


def test_training_refuses_a_missing_pick_column_in_one_line(tmp_path: Path) -> None:
    no_s = set_column(write(tmp_path / "nos", rows()), "trace_S_arrival_sample", None)
    with pytest.raises(SeismicMLError, match="no S pick column") as info:
        task_datasets(no_s, "phasenet")
    one_line(str(info.value))
    no_p = set_column(write(tmp_path / "nop", rows()), "trace_P_arrival_sample", None)
    with pytest.raises(SeismicMLError, match="no P pick column"):
        task_datasets(no_p)


def test_training_leaves_out_bad_sampling_rates_and_errs_when_none_remain(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = set_column(write(tmp_path / "r", rows()), "trace_sampling_rate_hz", [100.0, 0.0] * 12)
    with caplog.at_level(logging.WARNING):
        train_set, dev_set, task = task_datasets(folder)
    assert len(train_set) + len(dev_set) == 12
    assert "traces have a trace_sampling_rate_hz that cannot be resampled" in caplog.text
    set_column(folder, "trace_sampling_rate_hz", -1.0)
    with pytest.raises(SeismicMLError, match="trace_sampling_rate_hz") as info:
        task_datasets(folder)
    one_line(str(info.value))
    set_column(folder, "trace_sampling_rate_hz", "fast")
    with pytest.raises(SeismicMLError, match="24 traces have a non-numeric trace_sampling_rate_hz"):
        task_datasets(folder)


# ------------------------------------------------------------------ data synth


def test_data_synth_out_an_existing_file_is_one_line(tmp_path: Path) -> None:
    file = tmp_path / "a_file.txt"
    file.write_text("not a folder")
    result = CliRunner().invoke(cli, ["data", "synth", "--out", str(file), "--n-traces", "10"])
    assert result.exit_code == 1
    assert one_line(result.output) == f"Error: --out {file} is a file: give a folder to write " \
        "the dataset into"  # fmt: skip
    below = CliRunner().invoke(
        cli, ["data", "synth", "--out", str(file / "sub"), "--n-traces", "10"]
    )
    assert below.exit_code == 1 and one_line(below.output).startswith("Error: cannot write")
    assert file.read_text() == "not a folder"
