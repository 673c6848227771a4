"""Classical baselines on the evaluation windows: an STA/LTA P picker and Richter-style ML.

Picker: recursive STA/LTA (obspy) on the band-passed vertical component; the P pick is the
first trigger onset, the window's detection score the highest STA/LTA ratio. Settings chosen
for windows that start 2.5 s or more before P (a 2 s LTA fills before the onset).

Magnitude: ML = log10(A) - log10(A0(R)) with A the peak simulated Wood-Anderson amplitude (mm)
of the horizontals and -log A0 of Hutton & Boore (1987). Counts become ground velocity with
the synthetic set's flat gain: on data with another (unknown) response the values carry a
constant offset, while the residual scatter still measures the method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from obspy.signal.filter import bandpass
from obspy.signal.trigger import recursive_sta_lta, trigger_onset

from seismic_ml.data.registry import SAMPLING_RATE, first_pick
from seismic_ml.data.synthetic import (
    VP_KM_S,
    VS_KM_S,
    hutton_boore_minus_log_a0,
    wood_anderson_peaks_mm,
)


@dataclass(frozen=True)
class StaLtaSettings:
    """STA and LTA lengths (s), trigger on/off ratios and the pre-filter band (Hz)."""

    sta_s: float = 0.3
    lta_s: float = 2.0
    trigger_on: float = 3.0
    trigger_off: float = 1.0
    freqmin: float = 1.0
    freqmax: float = 20.0


def sta_lta_picks(
    windows: np.ndarray, sampling_rate: float, settings: StaLtaSettings = StaLtaSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """P pick samples (NaN: no trigger) and detection scores of (B, 3, N) ZNE windows.

    The band-pass runs over the whole batch in one call (obspy's bandpass takes an axis):
    designing the filter once per window took as long as the network's forward pass.
    """
    s = settings
    z = np.asarray(windows, dtype=np.float64)[:, 0]
    if not len(z):
        return np.array([], dtype=float), np.array([], dtype=float)
    z = z - z.mean(axis=-1, keepdims=True)
    filtered = bandpass(z, s.freqmin, s.freqmax, sampling_rate, corners=2, axis=-1)
    sta, lta = int(s.sta_s * sampling_rate), int(s.lta_s * sampling_rate)
    picks, scores = [], []
    for row in filtered:
        cft = recursive_sta_lta(np.ascontiguousarray(row), sta, lta)
        onsets = trigger_onset(cft, s.trigger_on, s.trigger_off)
        picks.append(float(onsets[0][0]) if len(onsets) else float("nan"))
        scores.append(float(cft.max()))
    return np.array(picks, dtype=float), np.array(scores, dtype=float)


# What the ML baseline's values depend on besides the windows (the baseline cache's key).
ML_METHOD = "wood-anderson peak of the horizontals, Hutton & Boore 1987, flat synthetic gain"


def s_minus_p_distance_km(
    s_minus_p_s: np.ndarray | float, vp: float = VP_KM_S, vs: float = VS_KM_S
) -> np.ndarray:
    """Hypocentral distance from the S-P time: R = tSP * vp * vs / (vp - vs)."""
    return np.asarray(s_minus_p_s, dtype=float) * vp * vs / (vp - vs)


def hypocentral_distance_km(metadata: pd.DataFrame) -> np.ndarray:
    """Per trace: path_hyp_distance_km, else sqrt(epicentral² + depth²), else from S-P time."""
    distance = _column(metadata, "path_hyp_distance_km")
    epicentral = np.hypot(
        _column(metadata, "path_ep_distance_km"), _column(metadata, "source_depth_km")
    )
    distance = np.where(np.isfinite(distance), distance, epicentral)
    s_minus_p = (first_pick(metadata, "S") - first_pick(metadata, "P")).to_numpy(
        float
    ) / SAMPLING_RATE
    from_picks = np.where(s_minus_p > 0, s_minus_p_distance_km(s_minus_p), np.nan)
    return np.where(np.isfinite(distance), distance, from_picks)


def local_magnitude(wa_peak_mm: np.ndarray | float, distance_km: np.ndarray | float) -> np.ndarray:
    """ML from the Wood-Anderson peak (mm) and hypocentral distance (Hutton & Boore 1987)."""
    amplitude = np.asarray(wa_peak_mm, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a = np.where(amplitude > 0, np.log10(amplitude), np.nan)
    return log_a + hutton_boore_minus_log_a0(np.asarray(distance_km, dtype=float))


def ml_baseline(
    windows_counts: np.ndarray, distance_km: np.ndarray, sampling_rate: float
) -> np.ndarray:
    """Local magnitude per (3, N) ZNE window of raw counts; NaN where the distance is unknown."""
    peaks = wood_anderson_peaks_mm(windows_counts, sampling_rate)
    distance = np.asarray(distance_km, dtype=float)
    return np.where(np.isfinite(distance), local_magnitude(peaks, distance), np.nan)


def _column(metadata: pd.DataFrame, name: str) -> np.ndarray:
    if name not in metadata.columns:
        return np.full(len(metadata), np.nan)
    return pd.to_numeric(metadata[name], errors="coerce").to_numpy(dtype=float)
