"""predict's results as QuakeML: an obspy Catalog that `obspy.read_events` reads back.

Picks: one event per group of picks that follow each other, over all stations, by at most
EVENT_GAP_S (a new event starts after a longer silence); no origin, since nothing is located.
Each Pick carries its full waveform id, phase hint, peak time, evaluation mode automatic, the
model as method id, and the probability both as a comment and as the namespaced element
`seismic_ml:probability` (obspy: `pick.extra.probability.value`).

Magnitudes: one event holding a StationMagnitude per station, the event Magnitude (median,
its MAD as uncertainty, station count) with their contributions, and the P picks they used.
QuakeML requires a StationMagnitude to name its origin: without a location, they (and the
Magnitude) refer to one unresolved origin id, `smi:local/seismic-ml/unlocated/...`, which a
locator's origin replaces.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
from obspy import UTCDateTime
from obspy.core.event import (
    Catalog,
    Comment,
    CreationInfo,
    Event,
    Magnitude,
    Pick,
    QuantityError,
    ResourceIdentifier,
    StationMagnitude,
    StationMagnitudeContribution,
    WaveformStreamID,
)

from seismic_ml.version import __version__

NAMESPACE = "urn:seismic-ml:quakeml:1"
PREFIX = "seismic_ml"
EVENT_GAP_S = 30.0  # picks further apart than this (over all stations) start a new event
PROBABILITY_DIGITS = 4


def prediction_quakeml(
    kind: str, table: pd.DataFrame, event: dict[str, float] | None, model: dict[str, str]
) -> str:
    """predict's result (kind picks or magnitudes) as a QuakeML document."""
    buffer = io.BytesIO()
    catalog = prediction_catalog(kind, table, event, model)
    catalog.write(buffer, format="QUAKEML", nsmap={PREFIX: NAMESPACE})
    return buffer.getvalue().decode("utf-8")


def prediction_catalog(
    kind: str, table: pd.DataFrame, event: dict[str, float] | None, model: dict[str, str]
) -> Catalog:
    """Events of picks (phase models) or one event with magnitudes (magnitude models)."""
    if kind == "picks":
        return pick_catalog(table, model)
    return magnitude_catalog(table, event or {}, model)


def catalog_summary(catalog: Catalog) -> str:
    """A catalog's contents in a few words."""
    picks = sum(len(e.picks) for e in catalog)
    magnitudes = sum(len(e.station_magnitudes) for e in catalog)
    more = f", {magnitudes} station magnitudes" if magnitudes else ""
    return f"QuakeML: {len(catalog)} event(s), {picks} picks{more}"


# ---------------------------------------------------------------- picks


def pick_catalog(table: pd.DataFrame, model: dict[str, str]) -> Catalog:
    """One event per group of picks no more than EVENT_GAP_S apart; no origins."""
    times = [UTCDateTime(t) for t in table["time"]]
    events = []
    for group in group_by_gap(times, EVENT_GAP_S):
        picks = [make_pick(table.iloc[i], model) for i in group]
        events.append(Event(picks=picks, comments=[event_comment(model)]))
    return Catalog(events=events, creation_info=creation_info(model))


def group_by_gap(times: Sequence[UTCDateTime], gap_s: float) -> list[list[int]]:
    """Indices of times in time order, split wherever consecutive times are over gap_s apart."""
    order = sorted(range(len(times)), key=lambda i: times[i])
    groups: list[list[int]] = []
    for i in order:
        if groups and times[i] - times[groups[-1][-1]] <= gap_s:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def make_pick(row: pd.Series, model: dict[str, str], manual: bool = False) -> Pick:
    """A QuakeML pick of a table row (time, phase, probability, waveform id columns)."""
    pick = Pick(
        time=UTCDateTime(row["time"]),
        waveform_id=waveform_id(row),
        phase_hint=row["phase"],
        evaluation_mode="manual" if manual else "automatic",
        evaluation_status="preliminary",
        method_id=method_id(model),
        creation_info=creation_info(model),
    )
    probability = float(row.get("probability", math.nan))
    if math.isfinite(probability):
        pick.comments.append(Comment(text=f"probability {probability:.{PROBABILITY_DIGITS}f}"))
        pick.extra = {"probability": {"value": probability, "namespace": NAMESPACE}}
    return pick


def waveform_id(row: pd.Series, channel: str | None = None) -> WaveformStreamID:
    """The full waveform id of a table row (network, station, location, channel)."""
    return WaveformStreamID(
        network_code=row["network"],
        station_code=row["station"],
        location_code=row["location"],
        channel_code=row["channel"] if channel is None else channel,
    )


def method_id(model: dict[str, str]) -> ResourceIdentifier:
    """The model that made a pick or magnitude: smi:local/seismic-ml/TYPE/RUN_ID."""
    return ResourceIdentifier(f"smi:local/seismic-ml/{model['model_type']}/{model['run_id']}")


def creation_info(model: dict[str, str]) -> CreationInfo:
    """Author seismic-ml with its version (the model is the method id)."""
    return CreationInfo(author="seismic-ml", version=__version__)


def model_words(model: dict[str, str]) -> str:
    """The model in words: type, and the URI it was loaded from (or its run)."""
    return f"{model['model_type']} ({model.get('uri') or 'run ' + model['run_id']})"


def event_comment(model: dict[str, str]) -> Comment:
    """How the event's picks were grouped, and that it has no origin."""
    return Comment(
        text=f"picks of {model_words(model)} no more than {EVENT_GAP_S:g} s apart over all "
        "stations; not located (no origin)"
    )


# ---------------------------------------------------------------- magnitudes


def magnitude_catalog(
    table: pd.DataFrame, event: dict[str, float], model: dict[str, str]
) -> Catalog:
    """One event: station magnitudes, the event magnitude over them, the P picks they used."""
    origin = ResourceIdentifier(prefix="smi:local/seismic-ml/unlocated")
    station_magnitudes = [station_magnitude(row, origin, model) for _, row in table.iterrows()]
    magnitude = event_magnitude(event, station_magnitudes, origin, model)
    result = Event(
        picks=[p_pick(row, model) for _, row in table.iterrows()],
        magnitudes=[magnitude],
        station_magnitudes=station_magnitudes,
        preferred_magnitude_id=magnitude.resource_id,
        comments=[Comment(text=f"magnitude by {model_words(model)}; not located (no origin)")],
    )
    return Catalog(events=[result], creation_info=creation_info(model))


def station_magnitude(
    row: pd.Series, origin: ResourceIdentifier, model: dict[str, str]
) -> StationMagnitude:
    """One station's magnitude (sigma as its uncertainty when the model predicts one)."""
    sigma = float(row.get("sigma", math.nan))
    return StationMagnitude(
        origin_id=origin,
        mag=float(row["magnitude"]),
        mag_errors=QuantityError(uncertainty=sigma) if math.isfinite(sigma) else QuantityError(),
        station_magnitude_type=model["magnitude_type"],
        waveform_id=waveform_id(row),
        method_id=method_id(model),
        creation_info=creation_info(model),
    )


def event_magnitude(
    event: dict[str, float],
    station_magnitudes: list[StationMagnitude],
    origin: ResourceIdentifier,
    model: dict[str, str],
) -> Magnitude:
    """The event magnitude: median of the stations, their MAD as uncertainty, station count."""
    contributions = [
        StationMagnitudeContribution(station_magnitude_id=m.resource_id, weight=1.0)
        for m in station_magnitudes
    ]
    return Magnitude(
        mag=float(event["magnitude"]),
        mag_errors=QuantityError(uncertainty=float(event["mad"])),
        magnitude_type=model["magnitude_type"],
        origin_id=origin,
        station_count=int(event["stations"]),
        method_id=method_id(model),
        evaluation_mode="automatic",
        station_magnitude_contributions=contributions,
        creation_info=creation_info(model),
        comments=[Comment(text="median of the station magnitudes; uncertainty: their MAD")],
    )


def p_pick(row: pd.Series, model: dict[str, str]) -> Pick:
    """The P onset a station magnitude's window started from (manual when given)."""
    values = {"time": row["p_time"], "phase": "P", "probability": row["p_probability"]}
    pick_row = pd.Series({**row.to_dict(), **values, "channel": vertical_channel(row["channel"])})
    return make_pick(pick_row, model, manual=row["p_source"] == "given")


def vertical_channel(label: str) -> str:
    """The Z channel among the channels a magnitude read (HH? -> HHZ; HHZ,HN1,HN2 -> HHZ)."""
    if label.endswith("?"):
        return label[:-1] + "Z"
    vertical = [code for code in label.split(",") if code.upper().endswith("Z")]
    return vertical[0] if vertical else label


def probability_of(pick: Any) -> float:
    """The probability a pick read back from QuakeML carries (NaN when none)."""
    extra = getattr(pick, "extra", None) or {}
    entry = extra.get("probability")
    return float(entry["value"]) if entry else math.nan
