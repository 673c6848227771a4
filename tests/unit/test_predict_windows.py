"""predict reads a stream through one path for both tasks: model_input.station_inputs + cut."""

from __future__ import annotations

import numpy as np
import obspy
import pytest
import torch

from seismic_ml import load_model
from seismic_ml.errors import SeismicMLError
from seismic_ml.evaluation import predict as predicting
from seismic_ml.evaluation.model_input import ModelInput, cut, joined, station_inputs
from tests.unit.test_predict import event_file, logged_models

MODEL_INPUT = ModelInput(100.0, "ZNE", 3001)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An untrained phasenet and a small amag_v2, logged as training logs them."""
    return logged_models(tmp_path_factory)


@pytest.fixture(scope="module")
def event(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two stations of one synthetic event (one Z12, one ZNE) and the same file at 50 Hz."""
    found = event_file(tmp_path_factory)
    slow = found["stream"].copy()
    for tr in slow:
        tr.resample(50.0)
        tr.data = tr.data.round().astype(np.int32)
    found["slow"] = found["path"].with_name("event_50hz.mseed")
    slow.write(str(found["slow"]), format="MSEED")
    return found


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every (model input, station inputs) predict prepared, in call order."""
    calls = []

    def spy(stream: obspy.Stream, spec: ModelInput) -> list:
        calls.append((spec, station_inputs(stream, spec)))
        return calls[-1][1]

    monkeypatch.setattr(predicting, "station_inputs", spy)
    return calls


def _p_times(event: dict) -> list[str]:
    """--p-time STATION=TIME for each station of the event, from the truth."""
    times = []
    for station, (_, p) in event["truth"].items():
        start = event["stream"].select(station=station)[0].stats.starttime
        times.append(f"{station}={start + p / 100.0}")
    return times


def test_both_tasks_read_a_50_hz_stream_through_the_one_path(models, event, seen):
    picks = predicting.predict(load_model(models["uris"]["phase"]), [event["slow"]], threshold=0.05)
    magnitudes = predicting.predict(
        load_model(models["uris"]["magnitude"]), [event["slow"]], p_times=_p_times(event)
    )
    assert [spec for spec, _ in seen] == [MODEL_INPUT, MODEL_INPUT]
    for (_, inputs), prediction in zip(seen, (picks, magnitudes)):
        assert sorted(s.key.split(".")[1] for s in inputs) == sorted(event["truth"])
        assert all(s.resampled_from == {50.0} for s in inputs)
        assert {tr.stats.sampling_rate for s in inputs for tr in s.traces} == {100.0}
        notes = [n for n in prediction.notes if "resampled" in n]
        assert notes == [f"SY.{s} resampled from 50 Hz to 100 Hz" for s in sorted(event["truth"])]
    phase_inputs, magnitude_inputs = seen[0][1], seen[1][1]
    expected = models["phase"].classify(joined(phase_inputs), P_threshold=0.05, S_threshold=0.05)
    assert len(picks.table) == len(expected.picks) > 0  # the picks come from the prepared traces
    table = magnitudes.table.set_index("station")
    for station in magnitude_inputs:
        p_time = obspy.UTCDateTime(table.loc[station.key.split(".")[1], "p_time"])
        window, _ = cut(station, p_time - predicting.PRE_P_S, MODEL_INPUT)
        with torch.no_grad():
            magnitude = float(models["magnitude"](torch.from_numpy(window[None]))[0])
        assert table.loc[station.key.split(".")[1], "magnitude"] == pytest.approx(
            magnitude, abs=1e-3
        )


def _station(components: str, rate: float, seconds: float) -> obspy.Stream:
    """One station, one instrument: component k holds the constant k + 1."""
    start = obspy.UTCDateTime(2024, 3, 1, 12)
    header = {"network": "XX", "station": "ONE", "sampling_rate": rate, "starttime": start}
    return obspy.Stream(
        obspy.Trace(np.full(int(seconds * rate), k + 1.0), {**header, "channel": f"HH{c}"})
        for k, c in enumerate(components)
    )


def test_a_window_is_in_samples_long_in_the_model_order_and_padded_where_data_ends():
    stream = _station("21Z", 50.0, 20.0)  # 2 -> E, 1 -> N: given out of order
    (station,) = station_inputs(stream, MODEL_INPUT)
    assert station.channels == {"Z": "HHZ", "N": "HH1", "E": "HH2"}
    assert [tr.stats.channel for tr in station.traces] == ["HHZ", "HH1", "HH2"]
    window, padded = cut(station, stream[0].stats.starttime - 5.0, MODEL_INPUT)
    assert window.shape == (3, 3001) and window.dtype == np.float32 and padded
    assert np.allclose(window[:, 500:2400].mean(axis=1), [3.0, 2.0, 1.0], atol=0.05)  # Z N E
    assert not window[:, :500].any() and not window[:, 2600:].any()  # zeros where no data


def test_a_station_without_a_component_has_no_magnitude_in_one_line(models, event, tmp_path):
    path = tmp_path / "z_only.mseed"
    event["stream"].select(component="Z").write(str(path), format="MSEED")
    with pytest.raises(SeismicMLError) as caught:
        predicting.predict(load_model(models["uris"]["magnitude"]), [path], p_times=_p_times(event))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("no station could be evaluated: ")
    assert "no N/E component (the model reads ZNE), skipped" in message
    # a phase model picks such a station with zeros for the missing ones, and warns (documented)
    picks = predicting.predict(load_model(models["uris"]["phase"]), [path], threshold=0.05)
    assert sum("has no N, E component" in n for n in picks.notes) == 2
