"""Apply a trained model to a user's own waveform files (miniSEED, SAC, anything obspy reads).

A phase model picks P and S with seisbench's `classify`, at per-phase thresholds: the given
one for every phase, else those tuned on the model's dev split in training, else 0.3. A
magnitude model sees, per station, a window of raw counts at 100 Hz in ZNE order starting
PRE_P_S before the P onset (the middle of the 1-10 s range it was trained with); the onset
comes from a picker model or is given.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import obspy
import pandas as pd
import torch
from obspy import UTCDateTime
from torch import nn

from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.models.magnitude import split_output
from seismic_ml.tracking.loader import TrainedModel, load_model

SAMPLING_RATE = 100.0
PRE_P_S = 5.0
COMPONENTS = {"Z": "Z", "N": "N", "1": "N", "E": "E", "2": "E"}
PICK_COLUMNS = ["station", "phase", "time", "probability"]
FORMATS = ("csv", "json")
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
    model_uri: str,
    paths: Sequence[Path | str],
    picker_uri: str | None = None,
    p_times: Sequence[str] = (),
    threshold: float | None = None,
    curves: bool = False,
) -> Prediction:
    """Picks (phase model; curves: also its probability traces) or magnitudes per station.

    threshold applies to every phase; None: the model's (or picker's) tuned ones, else 0.3.
    """
    stream = read_waveforms(paths)
    trained = load_model(model_uri)
    missing = missing_components(stream, f"{trained.model_type} reads Z, N and E")
    if is_phase_model(trained.module):
        if picker_uri or p_times:
            raise SeismicMLError("--picker-uri and --p-time apply to magnitude models only")
        thresholds, shown = pick_thresholds(trained, threshold)
        prediction = predict_picks(trained.module, stream, thresholds, curves)
        prediction.notes.append(f"pick thresholds: {shown}")
    else:
        onsets, notes = p_onsets(stream, picker_uri, p_times, threshold)
        prediction = predict_magnitudes(trained.module, stream, onsets)
        prediction.notes[:0] = notes
    prediction.notes[:0] = missing
    return prediction


def missing_components(stream: obspy.Stream, needs: str) -> list[str]:
    """A warning per station that lacks a Z, N or E component (1/2 count as N/E)."""
    found: dict[str, set[str]] = {}
    for tr in stream:
        station = ".".join(tr.id.split(".")[:3])
        component = COMPONENTS.get(tr.stats.channel[-1:].upper())
        found.setdefault(station, set()).update({component} - {None})
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
    thresholds: dict[str, float],
    curves: bool = False,
) -> Prediction:
    """One row per pick: station, phase, peak time (UTC, ISO) and peak probability."""
    picks = _classify(model, stream, thresholds)
    rows = [
        {
            "station": _station_of(p.trace_id),
            "phase": p.phase,
            "time": str(p.peak_time),
            "probability": round(float(p.peak_value), 4),
        }
        for p in picks
    ]
    table = pd.DataFrame(rows, columns=PICK_COLUMNS).sort_values(["station", "time"])
    annotations = model.annotate(stream.copy()) if curves else None
    return Prediction("picks", table.reset_index(drop=True), [], stream, annotations)


def _classify(model: nn.Module, stream: obspy.Stream, thresholds: dict[str, float]) -> list:
    """seisbench picks at each phase's threshold, for every phase the model has."""
    kwargs = {f"{phase}_threshold": thresholds[phase] for phase in model.labels if phase in "PS"}
    return list(model.classify(stream.copy(), **kwargs).picks)


def _station_of(trace_id: str) -> str:
    """NET.STA.LOC of a seisbench trace id (which may carry the instrument code too)."""
    return ".".join(trace_id.split(".")[:3])


# ---------------------------------------------------------------- P onsets


def p_onsets(
    stream: obspy.Stream, picker_uri: str | None, p_times: Sequence[str], threshold: float | None
) -> tuple[dict[str, tuple[UTCDateTime, str, float]], list[str]]:
    """Per station (NET.STA.LOC): P time, where it came from, its probability (NaN if given)."""
    stations = station_ids(stream)
    if bool(picker_uri) == bool(p_times):
        raise SeismicMLError("a magnitude model needs the P onset: give --picker-uri or --p-time")
    if p_times:
        return _given_onsets(stations, p_times), []
    trained = load_model(picker_uri)
    picker = trained.module
    if not is_phase_model(picker):
        raise SeismicMLError(f"--picker-uri {picker_uri} is not a phase-picking model")
    thresholds, shown = pick_thresholds(trained, threshold)
    onsets: dict[str, tuple[UTCDateTime, str, float]] = {}
    for pick in _classify(picker, stream, thresholds):
        station = _station_of(pick.trace_id)
        if pick.phase == "P" and pick.peak_value > onsets.get(station, (0, "", -1.0))[2]:
            onsets[station] = (pick.peak_time, "picker", round(float(pick.peak_value), 4))
    below = f"no P pick above {thresholds['P']:.3g}, skipped"
    notes = [f"{s}: {below}" for s in stations if s not in onsets]
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
    return sorted({".".join(tr.id.split(".")[:3]) for tr in stream})


def predict_magnitudes(
    model: nn.Module, stream: obspy.Stream, onsets: dict[str, tuple[UTCDateTime, str, float]]
) -> Prediction:
    """One row per station with a P onset: the model's magnitude (and sigma) from its window."""
    rows, notes = [], []
    for station, (p_time, source, probability) in sorted(onsets.items()):
        try:
            window, padded = station_window(stream, station, p_time, int(model.in_samples))
        except SeismicMLError as exc:
            notes.append(f"{station}: {exc}, skipped")
            continue
        magnitude, sigma = _magnitude(model, window)
        row = {"station": station, "p_time": str(p_time), "p_source": source}
        row.update({"p_probability": probability, "magnitude": round(magnitude, 3)})
        if sigma is not None:
            row["sigma"] = round(sigma, 3)
        rows.append({**row, "padded": padded})
    if not rows:
        raise SeismicMLError("no station could be evaluated: " + "; ".join(notes))
    table = pd.DataFrame(rows)
    notes.append(event_magnitude_note(table["magnitude"].to_numpy()))
    return Prediction("magnitudes", table, notes)


def event_magnitude_note(magnitudes: np.ndarray) -> str:
    """The network magnitude a seismologist reports: the station median, with its spread (MAD)."""
    median = float(np.median(magnitudes))
    mad = float(np.median(np.abs(magnitudes - median)))
    return f"event magnitude {median:.2f} (median of {len(magnitudes)} stations, MAD {mad:.2f})"


def station_window(
    stream: obspy.Stream, station: str, p_time: UTCDateTime, n_samples: int
) -> tuple[np.ndarray, bool]:
    """(3, n) raw counts, ZNE (1/2 read as N/E), 100 Hz, from PRE_P_S before P; zero-padded?"""
    net, sta, loc = station.split(".")
    traces = stream.select(network=net, station=sta, location=loc).copy()
    for tr in traces:
        tr.data = tr.data.astype(np.float64)
    traces.merge(method=1, fill_value=0.0)
    start = p_time - PRE_P_S
    end = start + (n_samples - 1) / SAMPLING_RATE
    rows, padded = {}, False
    for tr in traces:
        component = COMPONENTS.get(tr.stats.channel[-1:].upper())
        if component is None or component in rows:
            continue
        if tr.stats.sampling_rate != SAMPLING_RATE:
            tr.resample(SAMPLING_RATE)
        if tr.stats.endtime < start or tr.stats.starttime > end:
            raise SeismicMLError(f"no data from {start} to {end} ({tr.id})")
        padded |= tr.stats.starttime > start or tr.stats.endtime < end
        tr.trim(start, end, pad=True, fill_value=0.0, nearest_sample=True)
        rows[component] = _fit(tr.data, n_samples)
    missing = [c for c in "ZNE" if rows.get(c) is None]
    if missing:
        raise SeismicMLError(f"no {'/'.join(missing)} component around {p_time}")
    return np.stack([rows[c] for c in "ZNE"]).astype(np.float32), bool(padded)


def _fit(data: np.ndarray, n_samples: int) -> np.ndarray:
    """Exactly n_samples: cut, or zero-pad at the end (trim may be one sample off)."""
    out = np.zeros(n_samples)
    out[: min(len(data), n_samples)] = data[:n_samples]
    return out


@torch.no_grad()
def _magnitude(model: nn.Module, window: np.ndarray) -> tuple[float, float | None]:
    magnitude, sigma = split_output(model(torch.from_numpy(window[None])))
    return float(magnitude[0]), None if sigma is None else float(sigma[0])


# ---------------------------------------------------------------- output


def format_table(table: pd.DataFrame, fmt: str) -> str:
    """The table as CSV or as a JSON list of records (NaN as null)."""
    if fmt not in FORMATS:
        raise SeismicMLError(f"unknown format {fmt!r}; choose {' or '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False)
    records = json.loads(table.to_json(orient="records"))
    return json.dumps(records, indent=2) + "\n"


def write_table(table: pd.DataFrame, fmt: str, out: Path) -> Path:
    """Write the formatted table to a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(format_table(table, fmt))
    return out
