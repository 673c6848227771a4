"""`seismic-ml predict` on miniSEED written with obspy, with models logged to MLflow."""

from __future__ import annotations

import io
import json
from pathlib import Path

import mlflow
import numpy as np
import obspy
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from seismic_ml.cli.evaluation import predict
from seismic_ml.config import RunConfig
from seismic_ml.data.registry import load_dataset
from seismic_ml.models.configs import AmagV2Config, PhaseNetConfig
from seismic_ml.models.registry import build_model
from seismic_ml.tracking import artifacts, model_io

PRE_P = 500  # samples: predict's window starts 5 s before P


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An untrained phase model and a small magnitude model, logged as training logs them."""
    torch.manual_seed(0)
    configs = {
        "phase": RunConfig("phasenet", PhaseNetConfig()),
        "magnitude": RunConfig("amag_v2", AmagV2Config(lstm_hidden=8, attention_heads=2)),
    }
    built = {t: build_model(c.model_type, c.model).eval() for t, c in configs.items()}
    mlflow.set_experiment("predict-tests")
    uris = {}
    for task, model in built.items():
        with mlflow.start_run():
            mlflow.log_params(configs[task].to_params())
            folder = tmp_path_factory.mktemp(task)
            artifacts.write_model_files(model, configs[task], folder)
            mlflow.log_artifacts(str(folder), artifacts.WEIGHTS_DIR)
            uris[task] = model_io.log_model(model, configs[task])
    return {"uris": uris, **built}


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two stations of one synthetic event in one miniSEED file (one named Z12, one ZNE)."""
    dataset = load_dataset("synthetic:200")
    meta = dataset.metadata
    first = meta.index[meta["trace_category"] == "earthquake"][0]
    rows = meta.index[meta["source_id"] == meta.loc[first, "source_id"]][:2]
    stream, truth = obspy.Stream(), {}
    for row, components in zip(rows, ("Z12", "ZNE")):
        waveform, m = dataset.get_sample(row)
        start = obspy.UTCDateTime(m["trace_start_time"])
        for data, comp in zip(waveform, components):
            header = {"network": "SY", "station": m["station_code"], "channel": f"HH{comp}"}
            header.update({"sampling_rate": 100.0, "starttime": start})
            stream += obspy.Trace(data.astype(np.int32), header=header)
        truth[m["station_code"]] = (waveform, round(m["trace_P_arrival_sample"]))
    path = tmp_path_factory.mktemp("predict") / "event.mseed"
    stream.write(str(path), format="MSEED")
    return {"path": path, "truth": truth, "stream": obspy.read(str(path))}


def _invoke(*args: str):
    return CliRunner().invoke(predict, [str(a) for a in args])


def test_phase_model_writes_a_picks_table_and_a_figure(models, event, tmp_path):
    out = tmp_path / "picks.csv"
    result = _invoke(
        "--model-uri", models["uris"]["phase"], event["path"], "--threshold", 0.05, "--out", out
    )
    assert result.exit_code == 0, result.output
    picks = pd.read_csv(out)
    assert list(picks.columns) == ["station", "phase", "time", "probability"]
    assert set(picks["station"]) == {f"SY.{s}." for s in event["truth"]}
    assert set(picks["phase"]) <= {"P", "S"} and len(picks) >= 2
    assert picks["probability"].between(0.05, 1.0).all()
    span = (
        min(tr.stats.starttime for tr in event["stream"]),
        max(tr.stats.endtime for tr in event["stream"]),
    )
    assert all(span[0] <= obspy.UTCDateTime(t) <= span[1] for t in picks["time"])
    assert (tmp_path / "picks.png").read_bytes()[:4] == b"\x89PNG"


def test_magnitude_model_gives_one_magnitude_per_station_from_the_window_after_p(models, event):
    args = ["--model-uri", models["uris"]["magnitude"], event["path"]]
    for station, (_, p) in event["truth"].items():
        start = event["stream"].select(station=station)[0].stats.starttime
        args += ["--p-time", f"{station}={start + p / 100.0}"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.stdout)).set_index("station")
    assert sorted(table.index) == sorted(f"SY.{s}." for s in event["truth"])
    for station, (waveform, p) in event["truth"].items():
        window = torch.from_numpy(waveform[None, :, p - PRE_P : p - PRE_P + 3001].copy())
        with torch.no_grad():
            expected = float(models["magnitude"](window)[0])
        assert table.loc[f"SY.{station}.", "magnitude"] == pytest.approx(expected, abs=2e-3)
        assert not table.loc[f"SY.{station}.", "padded"]
    median = float(np.median(table["magnitude"]))
    assert f"event magnitude {median:.2f} (median of {len(table)} stations" in result.stderr


def test_json_output_and_one_p_time_for_a_single_station(models, event):
    station, (_, p) = next(iter(event["truth"].items()))
    start = event["stream"].select(station=station)[0].stats.starttime
    result = _invoke(
        "--model-uri",
        models["uris"]["magnitude"],
        event["path"],
        "--p-time",
        f"SY.{station}={start + p / 100.0}",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["station"] for r in records] == [f"SY.{station}."]
    assert records[0]["p_source"] == "given" and np.isfinite(records[0]["magnitude"])


def test_magnitude_model_with_a_picker_model_for_p(models, event):
    result = _invoke(
        "--model-uri",
        models["uris"]["magnitude"],
        event["path"],
        "--picker-uri",
        models["uris"]["phase"],
        "--threshold",
        0.05,
    )
    assert result.exit_code == 0, result.output
    table = pd.read_csv(io.StringIO(result.stdout))
    assert sorted(table["station"]) == sorted(f"SY.{s}." for s in event["truth"])
    assert (table["p_source"] == "picker").all()
    assert table["p_probability"].between(0.05, 1.0).all()


def test_unreadable_file_is_one_clear_line(models, tmp_path):
    path = tmp_path / "broken.mseed"
    path.write_bytes(b"not a seismogram\n")
    result = _invoke("--model-uri", models["uris"]["phase"], path)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot read {path}")
    assert "Traceback" not in result.output


def test_magnitude_model_without_p_onset_says_what_to_give(models, event):
    result = _invoke("--model-uri", models["uris"]["magnitude"], event["path"])
    assert result.exit_code == 1
    assert "--picker-uri or --p-time" in result.output


def test_unknown_station_in_p_time_is_an_error(models, event):
    result = _invoke(
        "--model-uri",
        models["uris"]["magnitude"],
        event["path"],
        "--p-time",
        "XX.NOPE=2020-01-01T00:00:00",
    )
    assert result.exit_code == 1
    assert "no station 'XX.NOPE'" in result.output


def test_missing_file_is_named(models, tmp_path: Path):
    missing = tmp_path / "nothing.mseed"
    result = _invoke("--model-uri", models["uris"]["phase"], missing)
    assert result.exit_code == 1
    assert f"cannot read {missing}: no such file" in result.output


def test_a_missing_component_is_a_warning_and_plot_names_the_figure(models, event, tmp_path):
    one_component = tmp_path / "z_only.mseed"
    event["stream"].select(component="Z").write(str(one_component), format="MSEED")
    figure = tmp_path / "figures" / "my_picks.png"
    figure.parent.mkdir()
    result = _invoke(
        "--model-uri", models["uris"]["phase"], one_component, "--threshold", 0.05,
        "--plot", figure,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    warnings = [x for x in result.output.splitlines() if "has no N, E component" in x]
    assert len(warnings) == 2 and all("phasenet reads Z, N and E" in w for w in warnings)
    assert figure.read_bytes()[:4] == b"\x89PNG"
    complete = _invoke("--model-uri", models["uris"]["phase"], event["path"])
    assert "component" not in complete.output  # Z12 and ZNE stations are complete
