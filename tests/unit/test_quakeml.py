"""`seismic-ml predict --format quakeml`: what obspy.read_events reads back from the file."""

from __future__ import annotations

import math

import numpy as np
import obspy
import pytest
from click.testing import CliRunner
from obspy import UTCDateTime
from obspy.io.quakeml.core import _validate

from seismic_ml.cli.evaluation import predict
from seismic_ml.evaluation.quakeml import EVENT_GAP_S, group_by_gap, probability_of
from tests.unit.test_predict import event_file, logged_models, read_table


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An untrained phasenet and a small amag_v2, logged as training logs them."""
    return logged_models(tmp_path_factory)


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two stations of one synthetic event in one miniSEED file."""
    return event_file(tmp_path_factory)


def _invoke(*args: object):
    return CliRunner().invoke(predict, [str(a) for a in args])


def _seed(pick) -> str:
    return pick.waveform_id.get_seed_string()


def test_picks_read_back_from_quakeml_are_the_csv_picks(models, event, tmp_path):
    args = ["--model-uri", models["uris"]["phase"], event["path"], "--threshold", 0.05]
    table = _invoke(*args)
    assert table.exit_code == 0, table.output
    out = tmp_path / "picks.xml"
    result = _invoke(*args, "--format", "quakeml", "--out", out)
    assert result.exit_code == 0, result.output
    assert _validate(str(out))  # QuakeML 1.2's schema
    catalog = obspy.read_events(str(out))
    picks = [p for e in catalog for p in e.picks]
    assert f"wrote QuakeML: {len(catalog)} event(s), {len(picks)} picks to {out}" in result.stderr
    expected = {
        (f"{r.network}.{r.station}.{r.location}.{r.channel}", r.phase, UTCDateTime(r.time).ns,
         r.probability)
        for r in read_table(table.stdout).itertuples()
    }  # fmt: skip
    got = {(_seed(p), p.phase_hint, p.time.ns, probability_of(p)) for p in picks}
    assert got == expected and len(picks) == len(expected)
    for pick in picks:
        assert pick.evaluation_mode == "automatic"
        assert pick.method_id.id == f"smi:local/seismic-ml/phasenet/{models['run_ids']['phase']}"
        assert pick.comments[0].text == f"probability {probability_of(pick):.4f}"
    assert all(not e.origins for e in catalog)


def test_picks_far_apart_are_separate_events(models, event, tmp_path):
    later = event["stream"].copy()
    for tr in later:
        tr.stats.starttime += 600  # the same event ten minutes later, at other stations
        tr.stats.station = tr.stats.station.replace("S", "T")
    path = tmp_path / "two_events.mseed"
    (event["stream"] + later).write(str(path), format="MSEED")
    out = tmp_path / "two.xml"
    result = _invoke("--model-uri", models["uris"]["phase"], path, "--threshold", 0.05,
                     "--format", "quakeml", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    catalog = obspy.read_events(str(out))
    assert len(catalog) >= 2
    for e in catalog:
        times = sorted(p.time for p in e.picks)
        assert all(b - a <= EVENT_GAP_S for a, b in zip(times, times[1:]))
        stations = {p.waveform_id.station_code[0] for p in e.picks}
        assert len(stations) == 1  # an event holds picks of one copy only
    starts = sorted((min(p.time for p in e.picks), max(p.time for p in e.picks)) for e in catalog)
    assert all(b[0] - a[1] > EVENT_GAP_S for a, b in zip(starts, starts[1:]))


def test_group_by_gap_splits_at_silences_longer_than_the_gap() -> None:
    t0 = UTCDateTime(2024, 1, 1)
    times = [t0 + s for s in (100, 0, 10, 35, 200, 65.5, 230)]
    assert group_by_gap(times, 30) == [[1, 2, 3], [5], [0], [4, 6]]
    assert group_by_gap([], 30) == []


def test_magnitudes_in_quakeml_carry_the_event_and_station_magnitudes(models, event, tmp_path):
    args = ["--model-uri", models["uris"]["magnitude"], event["path"]]
    for station, (_, p) in event["truth"].items():
        start = event["stream"].select(station=station)[0].stats.starttime
        args += ["--p-time", f"{station}={start + p / 100.0}"]
    table = read_table(_invoke(*args).stdout).set_index("station")
    out = tmp_path / "magnitude.xml"
    result = _invoke(*args, "--format", "quakeml", "--out", out)
    assert result.exit_code == 0, result.output
    assert _validate(str(out))
    (quake,) = obspy.read_events(str(out))
    magnitude = quake.preferred_magnitude()
    median = float(np.median(table["magnitude"]))
    assert magnitude.mag == pytest.approx(median, abs=1e-3)
    mad = float(np.median(np.abs(table["magnitude"] - median)))
    assert magnitude.mag_errors.uncertainty == pytest.approx(mad, abs=1e-3)
    assert magnitude.station_count == len(table) == len(quake.station_magnitudes)
    assert magnitude.magnitude_type == "M"
    contributions = {c.station_magnitude_id for c in magnitude.station_magnitude_contributions}
    assert contributions == {m.resource_id for m in quake.station_magnitudes}
    for m in quake.station_magnitudes:
        assert _seed(m) == f"SY.{m.waveform_id.station_code}..HH?"
        assert m.mag == pytest.approx(table.loc[m.waveform_id.station_code, "magnitude"])
    given = {(p.waveform_id.station_code, p.time.ns, p.evaluation_mode) for p in quake.picks}
    assert given == {(s, UTCDateTime(table.loc[s, "p_time"]).ns, "manual") for s in table.index}
    assert all(_seed(p).endswith(".HHZ") and math.isnan(probability_of(p)) for p in quake.picks)


def test_quakeml_to_stdout_reads_back(models, event, tmp_path):
    result = _invoke("--model-uri", models["uris"]["phase"], event["path"], "--threshold", 0.05,
                     "--format", "quakeml")  # fmt: skip
    assert result.exit_code == 0, result.output
    path = tmp_path / "stdout.xml"
    path.write_text(result.stdout)
    assert sum(len(e.picks) for e in obspy.read_events(str(path))) >= 4
