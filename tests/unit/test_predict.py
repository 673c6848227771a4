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

from seismic_ml import model_files
from seismic_ml.cli.evaluation import predict
from seismic_ml.config import RunConfig
from seismic_ml.data.registry import load_dataset
from seismic_ml.models.configs import AmagV2Config, PhaseNetConfig
from seismic_ml.models.registry import build_model
from seismic_ml.tracking import model_io

PRE_P = 500  # samples: predict's window starts 5 s before P


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An untrained phase model and a small magnitude model, logged as training logs them."""
    return logged_models(tmp_path_factory)


def logged_models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An untrained phasenet and a small amag_v2: their URIs and modules (shared with QuakeML)."""
    torch.manual_seed(0)
    configs = {
        "phase": RunConfig("phasenet", PhaseNetConfig()),
        "magnitude": RunConfig("amag_v2", AmagV2Config(lstm_hidden=8, attention_heads=2)),
    }
    built = {t: build_model(c.model_type, c.model).eval() for t, c in configs.items()}
    mlflow.set_experiment("predict-tests")
    uris, run_ids = {}, {}
    for task, model in built.items():
        with mlflow.start_run() as run:
            mlflow.log_params(configs[task].to_params())
            folder = tmp_path_factory.mktemp(task)
            model_files.write_model_files(model, configs[task], folder)
            mlflow.log_artifacts(str(folder), model_files.WEIGHTS_DIR)
            uris[task] = model_io.log_model(model, configs[task])
            run_ids[task] = run.info.run_id
    return {"uris": uris, "run_ids": run_ids, **built}


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two stations of one synthetic event in one miniSEED file (one named Z12, one ZNE)."""
    return event_file(tmp_path_factory)


def event_file(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The miniSEED file of two stations of one synthetic event, its truth and its stream."""
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


def read_table(text_or_path: str | Path) -> pd.DataFrame:
    """A predict CSV as a user reads it: comment lines skipped, trace ids as text."""
    source = text_or_path if isinstance(text_or_path, Path) else io.StringIO(text_or_path)
    ids = {c: str for c in ("network", "station", "location", "channel")}
    return pd.read_csv(source, comment="#", dtype=ids, keep_default_na=False)


def test_phase_model_writes_a_picks_table_and_a_figure(models, event, tmp_path):
    out = tmp_path / "picks.csv"
    result = _invoke(
        "--model-uri", models["uris"]["phase"], event["path"], "--threshold", 0.05, "--out", out
    )
    assert result.exit_code == 0, result.output
    picks = read_table(out)
    columns = ["network", "station", "location", "channel", "phase", "time", "probability"]
    assert list(picks.columns) == columns
    assert set(picks["station"]) == set(event["truth"])
    assert set(picks["network"]) == {"SY"} and set(picks["location"]) == {""}
    assert set(picks["phase"]) == {"P", "S"}
    z12, zne = event["truth"]  # the first station's horizontals are named 1 and 2
    channels = set(zip(picks["station"], picks["phase"], picks["channel"]))
    assert channels == {(z12, "P", "HHZ"), (z12, "S", "HH1"), (zne, "P", "HHZ"), (zne, "S", "HHN")}
    assert picks["probability"].between(0.05, 1.0).all()
    span = (
        min(tr.stats.starttime for tr in event["stream"]),
        max(tr.stats.endtime for tr in event["stream"]),
    )
    assert all(span[0] <= obspy.UTCDateTime(t) <= span[1] for t in picks["time"])
    assert (tmp_path / "picks.png").read_bytes()[:4] == b"\x89PNG"
    assert f"figure: {tmp_path / 'picks.png'} (2 stations)" in result.stderr


def test_magnitude_model_gives_one_magnitude_per_station_from_the_window_after_p(models, event):
    args = ["--model-uri", models["uris"]["magnitude"], event["path"]]
    for station, (_, p) in event["truth"].items():
        start = event["stream"].select(station=station)[0].stats.starttime
        args += ["--p-time", f"{station}={start + p / 100.0}"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    table = read_table(result.stdout).set_index("station")
    assert sorted(table.index) == sorted(event["truth"])
    assert list(table.columns[:3]) == ["network", "location", "channel"]
    assert set(table["network"]) == {"SY"} and set(table["channel"]) == {"HH?"}
    for station, (waveform, p) in event["truth"].items():
        window = torch.from_numpy(waveform[None, :, p - PRE_P : p - PRE_P + 3001].copy())
        with torch.no_grad():
            expected = float(models["magnitude"](window)[0])
        assert table.loc[station, "magnitude"] == pytest.approx(expected, abs=2e-3)
        assert not table.loc[station, "padded"]
    median = float(np.median(table["magnitude"]))
    mad = float(np.median(np.abs(table["magnitude"] - median)))
    line = f"event magnitude {median:.2f} (median of {len(table)} stations, MAD {mad:.2f})"
    assert f"note: {line}" in result.stderr
    assert result.stdout.splitlines()[0] == f"# {line}"  # in the output too, as a comment


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
    output = json.loads(result.stdout)
    records = output["stations"]
    assert [(r["network"], r["station"], r["location"]) for r in records] == [("SY", station, "")]
    assert records[0]["p_source"] == "given" and np.isfinite(records[0]["magnitude"])
    assert output["event"] == {"magnitude": records[0]["magnitude"], "mad": 0.0, "stations": 1}


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
    table = read_table(result.stdout)
    assert sorted(table["station"]) == sorted(event["truth"])
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


def test_a_resampled_station_is_named_in_one_line(models, event, tmp_path):
    stream = event["stream"].copy()
    z12 = next(iter(event["truth"]))
    for tr in stream.select(station=z12):
        tr.resample(50.0)
        tr.data = tr.data.round().astype(np.int32)  # counts, as the file's other traces
    path = tmp_path / "mixed.mseed"
    stream.write(str(path), format="MSEED")
    result = _invoke("--model-uri", models["uris"]["phase"], path, "--threshold", 0.05)
    assert result.exit_code == 0, result.output
    notes = [x for x in result.stderr.splitlines() if "resampled" in x]
    assert notes == [f"note: SY.{z12} resampled from 50 Hz to 100 Hz"]
    assert set(read_table(result.stdout)["station"]) == set(event["truth"])


def _stations(event: dict, count: int) -> obspy.Stream:
    """count stations (S0, S1, ...) holding copies of the event's second, ZNE station."""
    source = event["stream"].select(station=list(event["truth"])[1])
    stream = obspy.Stream()
    for i in range(count):
        for tr in source.copy():
            tr.stats.station = f"S{i}"
            stream += tr
    return stream


def test_the_figure_shows_every_station_on_pages(models, event, tmp_path):
    path = tmp_path / "ten.mseed"
    _stations(event, 10).write(str(path), format="MSEED")
    out = tmp_path / "picks.csv"
    result = _invoke("--model-uri", models["uris"]["phase"], path, "--out", out)
    assert result.exit_code == 0, result.output
    second = tmp_path / "picks-2.png"
    assert f"figure: {tmp_path / 'picks.png'}, {second} (10 stations, 8 per page)" in result.stderr
    assert second.read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "picks-3.png").exists()


def test_the_figure_says_how_many_stations_it_left_out(models, event, tmp_path, monkeypatch):
    from seismic_ml.evaluation import plots

    monkeypatch.setattr(plots, "MAX_PAGES", 1)
    path = tmp_path / "ten.mseed"
    _stations(event, 10).write(str(path), format="MSEED")
    figure = tmp_path / "f.png"
    result = _invoke("--model-uri", models["uris"]["phase"], path, "--plot", figure)
    assert result.exit_code == 0, result.output
    assert f"figure: {figure} (8 stations; 2 more not drawn (at most 1 pages))" in result.stderr
    assert not (tmp_path / "f-2.png").exists()


def test_a_station_with_two_instruments_is_picked_on_each(models, event, tmp_path):
    station = list(event["truth"])[1]
    broadband = event["stream"].select(station=station).copy()
    for tr in broadband:
        tr.stats.channel = "BH" + tr.stats.channel[-1]
    path = tmp_path / "two.mseed"
    (event["stream"] + broadband).write(str(path), format="MSEED")
    result = _invoke("--model-uri", models["uris"]["phase"], path, "--threshold", 0.05)
    assert result.exit_code == 0, result.output
    picks = read_table(result.stdout)
    mine = picks[picks["station"] == station]
    assert set(zip(mine["phase"], mine["channel"])) == {
        ("P", "HHZ"),
        ("S", "HHN"),
        ("P", "BHZ"),
        ("S", "BHN"),
    }
    same = mine.groupby("channel")["time"].apply(sorted)  # the same data: the same pick times
    assert same["HHZ"] == same["BHZ"] and same["HHN"] == same["BHN"]
