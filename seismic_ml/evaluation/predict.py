"""Apply a trained model to a user's own waveform files (miniSEED, SAC, anything obspy reads).

Both tasks read the stream through one path (`model_input.station_inputs`): per station and
instrument, the traces at the model's sampling rate, in its component order. A phase model picks
P and S with seisbench's `classify` on those traces, at per-phase thresholds: the given one for
every phase, else those tuned on the model's dev split in training, else 0.3. A magnitude model
reads, per station, one window of raw counts (`model_input.cut`, the model's `in_samples`)
starting PRE_P_S before the P onset (the middle of the 1-10 s range it was trained with); the
onset comes from a picker model or is given.

Every row names its trace: network, station, location and channel. A pick is made on all three
components; its channel is the vertical one for P and the first horizontal (N, else 1, else E)
for S. A station magnitude reads the three: its channel is the instrument code with '?' (HH?).
A station recorded by several instruments (HH and BH) is picked once per instrument. A trace
not sampled at the model's rate (100 Hz) is resampled, and said so in a note.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import obspy
import pandas as pd
import torch
from obspy import UTCDateTime
from torch import nn

from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.evaluation.model_input import (
    COMPONENTS,
    ModelInput,
    StationInput,
    cut,
    joined,
    station_inputs,
    station_key,
)
from seismic_ml.models.magnitude import split_output
from seismic_ml.trained import TrainedModel

PRE_P_S = 5.0
ID_COLUMNS = ["network", "station", "location", "channel"]
PICK_COLUMNS = [*ID_COLUMNS, "phase", "time", "probability"]
FORMATS = ("csv", "json", "quakeml")
# Which component's channel names a pick, in order of preference (N and E include 1 and 2).
PICK_COMPONENTS = {"P": "ZNE", "S": "NEZ"}
DEFAULT_THRESHOLD = 0.3
TUNED = "tuned on the model's dev split"
UNTUNED = "default: the model has none tuned"


@dataclass
class Prediction:
    """A predict result: the table, what kind it is, notes for the user, the phase figure data."""

    kind: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    stream: obspy.Stream | None = None
    annotations: obspy.Stream | None = None
    event: dict[str, float] | None = None  # magnitudes: the event magnitude, spread, stations
    model: dict[str, str] = field(default_factory=dict)  # what made it: type, run, URI


def read_waveforms(paths: Sequence[Path | str]) -> obspy.Stream:
    """All traces of the files; a file obspy cannot read is a SeismicMLError naming it."""
    if not paths:
        raise SeismicMLError("no waveform file given")
    stream = obspy.Stream()
    for path in map(Path, paths):
        if not path.is_file():
            raise SeismicMLError(f"cannot read {path}: no such file")
        try:
            stream += obspy.read(str(path))
        except Exception as exc:  # obspy raises a different class for every format and fault
            reason = first_line(exc)
            raise SeismicMLError(
                f"cannot read {path}: not a waveform file obspy can read "
                f"(miniSEED, SAC, GSE2, ...): {reason}"
            ) from None
    if not any(len(tr.data) for tr in stream):
        raise SeismicMLError("the files hold no samples")
    return stream


def is_phase_model(model: nn.Module) -> bool:
    """Phase models are seisbench WaveformModels with labels and classify()."""
    return hasattr(model, "classify") and hasattr(model, "labels")


def predict(
    trained: TrainedModel,
    paths: Sequence[Path | str],
    picker: TrainedModel | None = None,
    p_times: Sequence[str] = (),
    threshold: float | None = None,
    curves: bool = False,
) -> Prediction:
    """Picks (phase model; curves: also its probability traces) or magnitudes per station.

    threshold applies to every phase; None: the model's (or picker's) tuned ones, else 0.3.
    """
    stream = read_waveforms(paths)
    spec = ModelInput.of(trained.module)
    inputs = station_inputs(stream, spec)
    about_stream = missing_components(stream, f"{trained.model_type} reads Z, N and E")
    about_stream += resampled(inputs, spec)
    if is_phase_model(trained.module):
        if picker is not None or p_times:
            raise SeismicMLError("--picker-uri and --p-time apply to magnitude models only")
        thresholds, shown = pick_thresholds(trained, threshold)
        prediction = predict_picks(trained.module, stream, inputs, thresholds, curves)
        prediction.notes.append(f"pick thresholds: {shown}")
    else:
        onsets, notes = p_onsets(stream, picker, p_times, threshold)
        prediction = predict_magnitudes(trained.module, inputs, onsets)
        prediction.notes[:0] = notes
    prediction.notes[:0] = about_stream
    prediction.model = model_description(trained)
    return prediction


def model_description(trained: TrainedModel) -> dict[str, str]:
    """What the output says made it: model type, training run, URI, magnitude type."""
    magnitude_type = getattr(trained.config.data, "magnitude_type", "") or "M"
    return {
        "model_type": trained.model_type,
        "run_id": trained.run_id,
        "uri": trained.uri,
        "magnitude_type": magnitude_type,
    }


def station_label(key: str) -> str:
    """NET.STA.LOC as a person writes it: NET.STA when the location is empty."""
    return key[:-1] if key.endswith(".") else key


def instrument_of(trace: obspy.Trace) -> str:
    """The band and instrument code of a trace's channel (HH of HHZ)."""
    return trace.stats.channel[:-1]


def resampled(inputs: Sequence[StationInput], spec: ModelInput) -> list[str]:
    """A note per station with traces not at the model's rate: the rates they came at."""
    rates: dict[str, set[float]] = {}
    for station in inputs:
        if station.resampled_from:
            rates.setdefault(station.key, set()).update(station.resampled_from)
    return [
        f"{station_label(key)} resampled from {' and '.join(f'{r:g}' for r in sorted(found))} "
        f"Hz to {spec.sampling_rate:g} Hz"
        for key, found in sorted(rates.items())
    ]


def missing_components(stream: obspy.Stream, needs: str) -> list[str]:
    """A warning per station that lacks a Z, N or E component (1/2 count as N/E)."""
    found: dict[str, set[str]] = {}
    for tr in stream:
        component = COMPONENTS.get(tr.stats.channel[-1:].upper())
        found.setdefault(station_label(station_key(tr)), set()).update({component} - {None})
    return [
        f"warning: {station} has no {', '.join(c for c in 'ZNE' if c not in have)} component "
        f"({needs}; the missing ones are zeros, so its results are less reliable)"
        for station, have in sorted(found.items())
        if set("ZNE") - have
    ]


# ---------------------------------------------------------------- phase picks


def pick_thresholds(trained: TrainedModel, given: float | None) -> tuple[dict[str, float], str]:
    """Per-phase thresholds (given for all, else tuned, else 0.3) and words saying which."""
    phases = [p for p in "PS" if p in trained.module.labels]
    chosen = {p: _threshold_of(trained, p, given) for p in phases}
    sources = {source for _, source in chosen.values()}
    if len(sources) == 1:
        shown = ", ".join(f"{p} {t:.3g}" for p, (t, _) in chosen.items()) + f" ({sources.pop()})"
    else:
        shown = ", ".join(f"{p} {t:.3g} ({source})" for p, (t, source) in chosen.items())
    return {p: t for p, (t, _) in chosen.items()}, shown


def _threshold_of(trained: TrainedModel, phase: str, given: float | None) -> tuple[float, str]:
    """One phase's threshold and where it comes from."""
    if given is not None:
        return given, "--threshold"
    if phase in trained.thresholds:
        return trained.thresholds[phase], TUNED
    return DEFAULT_THRESHOLD, UNTUNED


def predict_picks(
    model: nn.Module,
    stream: obspy.Stream,
    inputs: Sequence[StationInput],
    thresholds: dict[str, float],
    curves: bool = False,
) -> Prediction:
    """One row per pick: its trace (network, station, location, channel), phase, peak time
    (UTC, ISO) and peak probability; stream: the traces as read, inputs: as the model reads
    them."""
    channels = channel_index(stream)
    rows = [
        pick_row(pick, channels.get((pick.trace_id, instrument), []))
        for pick, instrument in classify_picks(model, inputs, thresholds)
    ]
    table = pd.DataFrame(rows, columns=PICK_COLUMNS)
    table = table.sort_values(["network", "station", "location", "time", "channel"])
    annotations = model.annotate(joined(inputs)) if curves else None
    return Prediction("picks", table.reset_index(drop=True), [], stream, annotations)


def classify_picks(
    model: nn.Module, inputs: Sequence[StationInput], thresholds: dict[str, float]
) -> list[tuple[Any, str]]:
    """seisbench picks at each phase's threshold, each with the instrument it was made on."""
    kwargs = {f"{phase}_threshold": thresholds[phase] for phase in model.labels if phase in "PS"}
    found = []
    for part in instrument_rounds(inputs):
        instruments = {station.key: station.instrument for station in part}
        for pick in model.classify(joined(part), **kwargs).picks:
            found.append((pick, instruments.get(pick.trace_id, "")))
    return found


def instrument_rounds(inputs: Sequence[StationInput]) -> list[list[StationInput]]:
    """The inputs in rounds holding one instrument per station: one round unless a station
    has several instruments (seisbench picks a station's traces together)."""
    rounds: list[list[StationInput]] = []
    seen: dict[str, int] = {}
    for station in inputs:
        k = seen[station.key] = seen.get(station.key, -1) + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(station)
    return rounds


def channel_index(stream: obspy.Stream) -> dict[tuple[str, str], list[str]]:
    """(NET.STA.LOC, instrument) -> the channel codes recorded, sorted."""
    index: dict[tuple[str, str], set[str]] = {}
    for tr in stream:
        index.setdefault((station_key(tr), instrument_of(tr)), set()).add(tr.stats.channel)
    return {key: sorted(codes) for key, codes in index.items()}


def pick_channel(codes: Sequence[str], phase: str) -> str:
    """The channel naming a pick: vertical for P, first horizontal for S (else what there is)."""
    by_component: dict[str | None, str] = {}
    for code in codes:
        by_component.setdefault(COMPONENTS.get(code[-1:].upper()), code)
    for component in PICK_COMPONENTS.get(phase, "ZNE"):
        if component in by_component:
            return by_component[component]
    return codes[0] if codes else ""


def pick_row(pick: Any, codes: Sequence[str]) -> dict[str, Any]:
    """A picks-table row of a seisbench pick; codes: the channels of its instrument."""
    network, station, location = pick.trace_id.split(".")[:3]
    return {
        "network": network,
        "station": station,
        "location": location,
        "channel": pick_channel(codes, pick.phase),
        "phase": pick.phase,
        "time": str(pick.peak_time),
        "probability": round(float(pick.peak_value), 4),
    }


# ---------------------------------------------------------------- P onsets


def p_onsets(
    stream: obspy.Stream,
    picker: TrainedModel | None,
    p_times: Sequence[str],
    threshold: float | None,
) -> tuple[dict[str, tuple[UTCDateTime, str, float]], list[str]]:
    """Per station (NET.STA.LOC): P time, where it came from, its probability (NaN if given)."""
    stations = station_ids(stream)
    if (picker is not None) == bool(p_times):
        raise SeismicMLError("a magnitude model needs the P onset: give --picker-uri or --p-time")
    if p_times:
        return _given_onsets(stations, p_times), []
    if not is_phase_model(picker.module):
        raise SeismicMLError(f"--picker-uri {picker.uri} is not a phase-picking model")
    thresholds, shown = pick_thresholds(picker, threshold)
    inputs = station_inputs(stream, ModelInput.of(picker.module))
    onsets: dict[str, tuple[UTCDateTime, str, float]] = {}
    for pick, _ in classify_picks(picker.module, inputs, thresholds):
        station = pick.trace_id
        if pick.phase == "P" and pick.peak_value > onsets.get(station, (0, "", -1.0))[2]:
            onsets[station] = (pick.peak_time, "picker", round(float(pick.peak_value), 4))
    below = f"no P pick above {thresholds['P']:.3g}, skipped"
    notes = [f"{station_label(s)}: {below}" for s in stations if s not in onsets]
    return onsets, [f"picker's pick thresholds: {shown}", *notes]


def _given_onsets(
    stations: list[str], p_times: Sequence[str]
) -> dict[str, tuple[UTCDateTime, str, float]]:
    """--p-time TIME (every station) or --p-time STATION=TIME (NET.STA.LOC, NET.STA or STA)."""
    onsets = {}
    for value in p_times:
        key, _, text = value.rpartition("=")
        time = _utc(text)
        matched = [
            s for s in stations if not key or key in (s, s.rsplit(".", 1)[0], s.split(".")[1])
        ]
        if not matched:
            raise SeismicMLError(f"--p-time {value}: no station {key!r} in the files")
        onsets.update({s: (time, "given", float("nan")) for s in matched})
    return onsets


def _utc(text: str) -> UTCDateTime:
    try:
        return UTCDateTime(text)
    except (TypeError, ValueError) as exc:
        raise SeismicMLError(
            f"--p-time {text!r} is not a UTC time (e.g. 2024-01-01T12:00:03.5)"
        ) from exc


# ---------------------------------------------------------------- magnitudes


def station_ids(stream: obspy.Stream) -> list[str]:
    """NET.STA.LOC of every station in the stream, sorted."""
    return sorted({station_key(tr) for tr in stream})


def predict_magnitudes(
    model: nn.Module,
    inputs: Sequence[StationInput],
    onsets: dict[str, tuple[UTCDateTime, str, float]],
) -> Prediction:
    """One row per station with a P onset: the model's magnitude (and sigma) from its window,
    and the event magnitude over the stations."""
    spec = ModelInput.of(model)
    rows, notes = [], []
    for station, (p_time, source, probability) in sorted(onsets.items()):
        try:
            read = station_input(inputs, station, spec)
            window, padded = cut(read, p_time - PRE_P_S, spec)
        except SeismicMLError as exc:
            notes.append(f"{station_label(station)}: {exc}, skipped")
            continue
        magnitude, sigma = _magnitude(model, window)
        channel = channel_label(list(read.channels.values()))
        row = {**station_columns(station), "channel": channel, "p_time": str(p_time)}
        row.update({"p_source": source, "p_probability": probability})
        row["magnitude"] = round(magnitude, 3)
        if sigma is not None:
            row["sigma"] = round(sigma, 3)
        rows.append({**row, "padded": padded})
    if not rows:
        raise SeismicMLError("no station could be evaluated: " + "; ".join(notes))
    table = pd.DataFrame(rows)
    event = event_magnitude(table["magnitude"].to_numpy())
    notes.append(event_magnitude_note(event))
    return Prediction("magnitudes", table, notes, event=event)


def station_columns(key: str) -> dict[str, str]:
    """network, station and location of a NET.STA.LOC key."""
    network, station, location = key.split(".")
    return {"network": network, "station": station, "location": location}


def event_magnitude(magnitudes: np.ndarray) -> dict[str, float]:
    """The network magnitude a seismologist reports: the station median, its spread (MAD) and
    the number of stations."""
    median = float(np.median(magnitudes))
    mad = float(np.median(np.abs(magnitudes - median)))
    return {"magnitude": round(median, 3), "mad": round(mad, 3), "stations": len(magnitudes)}


def event_magnitude_note(event: dict[str, float]) -> str:
    """The event magnitude in words."""
    return (
        f"event magnitude {event['magnitude']:.2f} (median of {event['stations']} stations, "
        f"MAD {event['mad']:.2f})"
    )


def station_input(inputs: Sequence[StationInput], station: str, spec: ModelInput) -> StationInput:
    """The station's first instrument with every component the model reads (else its first)."""
    mine = [read for read in inputs if read.key == station]
    if not mine:
        raise SeismicMLError(f"no {', '.join(spec.component_order)} traces")
    return next((read for read in mine if not read.missing(spec)), mine[0])


def channel_label(codes: Sequence[str]) -> str:
    """Channels read together: the instrument code with '?' (HH?), else the codes joined."""
    instruments = {code[:-1] for code in codes}
    return f"{instruments.pop()}?" if len(instruments) == 1 else ",".join(sorted(codes))


@torch.no_grad()
def _magnitude(model: nn.Module, window: np.ndarray) -> tuple[float, float | None]:
    magnitude, sigma = split_output(model(torch.from_numpy(window[None])))
    return float(magnitude[0]), None if sigma is None else float(sigma[0])


# ---------------------------------------------------------------- output


def format_prediction(prediction: Prediction, fmt: str) -> str:
    """The prediction as CSV, JSON or QuakeML text."""
    if fmt not in FORMATS:
        raise SeismicMLError(f"unknown format {fmt!r}; choose {', '.join(FORMATS)}")
    if fmt == "quakeml":
        from seismic_ml.evaluation import quakeml

        return quakeml.prediction_quakeml(*_catalog_parts(prediction))
    if fmt == "csv":
        return csv_text(prediction)
    return json_text(prediction)


def csv_text(prediction: Prediction) -> str:
    """The table as CSV; a magnitude table starts with a comment line: the event magnitude."""
    header = f"# {event_magnitude_note(prediction.event)}\n" if prediction.event else ""
    return header + prediction.table.to_csv(index=False)


def json_text(prediction: Prediction) -> str:
    """Picks: a JSON list of records; magnitudes: {"event": {...}, "stations": [records]}."""
    records = json.loads(prediction.table.to_json(orient="records"))
    body = {"event": prediction.event, "stations": records} if prediction.event else records
    return json.dumps(body, indent=2) + "\n"


def write_prediction(prediction: Prediction, fmt: str, out: Path) -> Path:
    """Write the formatted prediction to a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_prediction(prediction, fmt))
    return out


def output_summary(prediction: Prediction, fmt: str) -> str:
    """What was written, in a few words: rows, or the QuakeML's events and picks."""
    if fmt == "quakeml":
        from seismic_ml.evaluation import quakeml

        return quakeml.catalog_summary(quakeml.prediction_catalog(*_catalog_parts(prediction)))
    return f"{len(prediction.table)} rows"


def _catalog_parts(prediction: Prediction) -> tuple:
    """What the QuakeML is made of: kind, table, event magnitude, model."""
    return prediction.kind, prediction.table, prediction.event, prediction.model
