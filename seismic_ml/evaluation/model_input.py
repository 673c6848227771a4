"""One path from a user's traces to a model's input, for phase and magnitude models alike.

`station_inputs` turns a stream into one `StationInput` per station and instrument: its traces
at the model's sampling rate (resampled as seisbench resamples: low-pass and decimate for a
whole-number ratio, else Fourier), only the components the model reads (1 and 2 count as N and
E), in the model's component order. `cut` takes a window of exactly the model's `in_samples`
from one: zero-padded where the data does not reach, one row per component in order. A phase
model's picks come from seisbench's `classify` on the prepared traces (it slides windows of
`in_samples` over them); a magnitude model reads one `cut` window per station. What the model
expects (`ModelInput`) is read from the model's attributes: `sampling_rate`,
`component_order`, `in_samples`, which phase and magnitude models both have.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import obspy
from obspy import UTCDateTime
from seisbench.models import WaveformModel
from torch import nn

from seismic_ml.errors import SeismicMLError

# The component letter of a channel code, as a model names it (1 and 2 are horizontals).
COMPONENTS = {"Z": "Z", "N": "N", "1": "N", "E": "E", "2": "E"}


@dataclass(frozen=True)
class ModelInput:
    """What a model reads: rate (Hz), component order ("ZNE") and window length (samples)."""

    sampling_rate: float
    component_order: str
    in_samples: int

    @classmethod
    def of(cls, module: nn.Module) -> ModelInput:
        """The input a phase or magnitude model declares in its attributes."""
        try:
            return cls(
                float(module.sampling_rate),
                str(module.component_order),
                int(module.in_samples),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise SeismicMLError(f"the model does not say what input it reads: {exc}") from None

    @property
    def seconds(self) -> float:
        """A window's length in seconds (first to last sample)."""
        return (self.in_samples - 1) / self.sampling_rate


@dataclass
class StationInput:
    """One station's traces of one instrument, in the model's rate and component order."""

    key: str  # NET.STA.LOC
    instrument: str  # band and instrument code (HH of HHZ)
    traces: obspy.Stream
    channels: dict[str, str] = field(default_factory=dict)  # model component -> channel code
    resampled_from: set[float] = field(default_factory=set)

    def missing(self, spec: ModelInput) -> list[str]:
        """The model's components this instrument did not record."""
        return [c for c in spec.component_order if c not in self.channels]


def station_key(trace: obspy.Trace) -> str:
    """NET.STA.LOC of a trace, as seisbench names its picks' traces."""
    return ".".join(trace.id.split(".")[:3])


def component_of(trace: obspy.Trace) -> str | None:
    """The model component a trace records (Z, N or E), None for anything else."""
    return COMPONENTS.get(trace.stats.channel[-1:].upper())


def station_inputs(stream: obspy.Stream, spec: ModelInput) -> list[StationInput]:
    """Every station and instrument of the stream, prepared as the model reads it (stream
    order: a station's first instrument comes first)."""
    groups: dict[tuple[str, str], list[obspy.Trace]] = {}
    for tr in stream:
        if component_of(tr) in spec.component_order:
            groups.setdefault((station_key(tr), tr.stats.channel[:-1]), []).append(tr)
    return [_prepare(key, instrument, traces, spec) for (key, instrument), traces in groups.items()]


def _prepare(
    key: str, instrument: str, traces: list[obspy.Trace], spec: ModelInput
) -> StationInput:
    """One instrument's traces: float, merged where they repeat, resampled, in model order."""
    prepared = obspy.Stream([tr.copy() for tr in traces])
    for tr in prepared:
        tr.data = tr.data.astype(np.float64)
    prepared.merge(-1)  # identical overlaps only; gaps stay gaps, as seisbench keeps them
    rates = {float(tr.stats.sampling_rate) for tr in prepared} - {spec.sampling_rate}
    WaveformModel.resample(prepared, spec.sampling_rate)
    order = {c: i for i, c in enumerate(spec.component_order)}
    prepared.traces.sort(key=lambda tr: (order[component_of(tr)], tr.stats.starttime))
    channels: dict[str, str] = {}
    for tr in prepared:
        channels.setdefault(component_of(tr), tr.stats.channel)
    return StationInput(key, instrument, prepared, channels, rates)


def cut(station: StationInput, start: UTCDateTime, spec: ModelInput) -> tuple[np.ndarray, bool]:
    """(components, in_samples) float32 from start, zeros where there is no data; padded?"""
    end = start + spec.seconds
    missing = station.missing(spec)
    if missing:
        raise SeismicMLError(
            f"no {'/'.join(missing)} component (the model reads {spec.component_order})"
        )
    rows, padded = [], False
    for component in spec.component_order:
        parts = _component(station.traces, station.channels[component])
        if parts[-1].stats.endtime < start or parts[0].stats.starttime > end:
            raise SeismicMLError(f"no data from {start} to {end} ({parts[0].id})")
        merged = parts.copy().merge(method=1, fill_value=0.0)[0]
        padded |= merged.stats.starttime > start or merged.stats.endtime < end
        padded |= len(parts) > 1 and _has_gap(parts, start, end)
        merged.trim(start, end, pad=True, fill_value=0.0, nearest_sample=True)
        rows.append(fit(merged.data, spec.in_samples))
    return np.stack(rows).astype(np.float32), bool(padded)


def _component(traces: obspy.Stream, channel: str) -> obspy.Stream:
    """The traces of one channel, by start time."""
    return obspy.Stream(sorted(traces.select(channel=channel), key=lambda t: t.stats.starttime))


def _has_gap(parts: obspy.Stream, start: UTCDateTime, end: UTCDateTime) -> bool:
    """Whether consecutive traces of a channel leave a gap between start and end."""
    for before, after in zip(parts, parts[1:]):
        gap = (before.stats.endtime, after.stats.starttime)
        if gap[1] - gap[0] > 1.5 * before.stats.delta and gap[0] < end and gap[1] > start:
            return True
    return False


def fit(data: np.ndarray, n_samples: int) -> np.ndarray:
    """Exactly n_samples: cut, or zero-pad at the end (trim may be one sample off)."""
    out = np.zeros(n_samples)
    out[: min(len(data), n_samples)] = data[:n_samples]
    return out


def joined(stations: Iterable[StationInput]) -> obspy.Stream:
    """The prepared traces of several stations as one stream (what classify reads)."""
    stream = obspy.Stream()
    for station in stations:
        stream += station.traces
    return stream
