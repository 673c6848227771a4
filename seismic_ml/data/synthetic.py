"""A physically grounded synthetic dataset in seisbench's format (DESIGN.md, "synthetic generator").

Each earthquake trace is built with the stochastic method (Boore 2003): envelope-shaped white
noise filtered by a causal Brune source spectrum and a causal attenuation filter, one P and one
S wave per trace, then scaled so that its Wood-Anderson amplitude obeys the local-magnitude
relation of Hutton & Boore (1987) plus a hidden station term and event and path scatter.
Magnitudes follow Gutenberg-Richter (b = 1, 0.5..5.5) thinned below completeness (about 1.5);
an event is recorded by more of the fixed 40-station network the larger it is, out to the
distance where its Wood-Anderson amplitude falls to 0.03 mm.

Wood-Anderson convention: static magnification 2800 (the value Hutton & Boore's -log A0 was
derived with), poles -6.283 +- 4.7124j, applied to ground velocity with one zero at 0.

The mixed variant (mixed=True) is shaped like ETHZ or GEOFON: traces at 100, 200 and 50 Hz and
some whose rate cell is empty (stored at data_format's rate), some 90 s long, picks at each
trace's own rate in Pg/P1 and Sg/S1 columns, some S picks and magnitudes missing. Its physics
is the 100 Hz synthesis, resampled band-limited (see _at_rate): read back at 100 Hz, as
seisbench does, a trace is close to what the plain set would hold.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal as sps
from scipy import special

from seismic_ml import progress
from seismic_ml.errors import SeismicMLError

SAMPLING_RATE = 100.0
TRACE_SAMPLES = 6000
VP_KM_S = 6.0
VS_KM_S = 3.5
GAIN_COUNTS_PER_M_S = 6.0e8
NETWORK_CODE = "SY"
N_STATIONS = 40
NOISE_FRACTION = 0.1
WOOD_ANDERSON_MAGNIFICATION = 2800.0
# The Wood-Anderson displacement response (zeros 0, 0) seen from ground velocity: one zero fewer.
WOOD_ANDERSON_PAZ_VELOCITY = {
    "poles": [-6.283 + 4.7124j, -6.283 - 4.7124j],
    "zeros": [0j],
    "gain": 1.0,
    "sensitivity": WOOD_ANDERSON_MAGNIFICATION,
}

_MAG_RANGE = (0.5, 5.5)
_B_VALUE = 1.0
_COMPLETENESS = 1.5
_COMPLETENESS_WIDTH = 0.4
_DIST_RANGE_KM = (5.0, 150.0)
_DEPTH_RANGE_KM = (2.0, 20.0)
_MIN_WA_MM = 0.03  # detection threshold: farther stations do not record the event
_STRESS_DROP_PA = 3.0e6
_STRESS_DROP_LOG10_SIGMA = 0.3
_SITE_SIGMA = 0.15
_PATH_SIGMA = 0.15
_S_TO_P = 5.0
_Q = 400.0
_P_RANGE = (500.0, 2500.0)
_NFFT = 8192  # > TRACE_SAMPLES, so the causal filters' ringing never wraps onto the trace
# Mixed set: (rate, share) per trace, NaN = empty rate cell, stored at SAMPLING_RATE.
_MIXED_RATES = ((100.0, 0.50), (200.0, 0.30), (50.0, 0.15), (np.nan, 0.05))
_LONG_FRACTION = 0.15
_LONG_SAMPLES = 9000  # 90 s at SAMPLING_RATE
_P_NAMES = ("Pg", "P1")
_S_NAMES = ("Sg", "S1")
_UNPICKED_S_FRACTION = 0.10
_NO_MAGNITUDE_FRACTION = 0.05
_CHUNK = 100
_NETWORK_SEED = 1987
_EPOCH = np.datetime64("2020-01-01T00:00:00", "us")
_YEAR_S = 365.0 * 86400.0
_SPLITS = (("train", 0.7), ("dev", 0.1), ("test", 0.2))
_NOISE_WINDOW = (-500, -50)  # samples relative to floor(P)
_SIGNAL_WINDOW = (0, 300)
# Component mixing of the base series, rows Z, radial, transverse. P: [a, ez, er, et];
# S: [sv, sh, dz, dr, dt]; a, sv, sh the coherent wave, the rest scattered energy.
_P_MIX = np.array([[1.0, 0.2, 0, 0], [0.4, 0, 0.2, 0], [0, 0, 0, 0.2]])
_S_MIX = np.array([[0.3, 0, 0.2, 0, 0], [0.8, 0, 0, 0.2, 0], [0, 1.0, 0, 0, 0.2]])


def hutton_boore_minus_log_a0(r_km: np.ndarray | float) -> np.ndarray | float:
    """-log A0 of Hutton & Boore (1987) at hypocentral distance r_km."""
    r = np.asarray(r_km, dtype=float)
    out = 1.11 * np.log10(r / 100.0) + 0.00189 * (r - 100.0) + 3.0
    return out if out.ndim else float(out)


def wood_anderson_peak_mm(waveform_counts: np.ndarray, sampling_rate: float) -> float:
    """Peak Wood-Anderson amplitude (mm) of the N and E rows of a ZNE trace in flat counts."""
    return float(wood_anderson_peaks_mm(np.asarray(waveform_counts)[None], sampling_rate)[0])


def wood_anderson_peaks_mm(windows_counts: np.ndarray, sampling_rate: float) -> np.ndarray:
    """Peak Wood-Anderson amplitude (mm) of the horizontals of (B, 3, N) ZNE windows in counts.

    obspy's simulate_seismometer (demean, 5% cosine taper, the PAZ response in the frequency
    domain, simple detrend, sensitivity) on every row at once: the same numbers, but the
    response is evaluated once per window length instead of once per trace and component,
    which made the classical baseline slower than the network it is compared with.
    """
    from obspy.signal.invsim import cosine_taper, paz_to_freq_resp
    from obspy.signal.util import _npts2nfft

    paz = WOOD_ANDERSON_PAZ_VELOCITY
    rows = np.asarray(windows_counts, dtype=np.float64)[:, 1:3] / GAIN_COUNTS_PER_M_S
    n = rows.shape[-1]
    nfft = _npts2nfft(n)
    rows = (rows - rows.mean(axis=-1, keepdims=True)) * cosine_taper(n, 0.05)
    response = paz_to_freq_resp(paz["poles"], paz["zeros"], paz["gain"], 1.0 / sampling_rate, nfft)
    spectrum = np.fft.rfft(rows, n=nfft) * response
    spectrum[..., -1] = np.abs(spectrum[..., -1])
    wa = np.fft.irfft(spectrum, n=nfft)[..., :n]
    ramp = np.arange(n) / float(n - 1)
    wa -= wa[..., :1] + ramp * (wa[..., -1:] - wa[..., :1])  # obspy's simple detrend
    return np.abs(wa).max(axis=(1, 2)) * paz["sensitivity"] * 1000.0


def synthetic_path(n_traces: int, seed: int = 0, mixed: bool = False) -> Path:
    """Where the dataset (or its mixed-rate variant) lives in the seisbench cache."""
    import seisbench

    name = "synthetic_mixed" if mixed else "synthetic"
    return Path(seisbench.cache_root) / "datasets" / f"{name}_{n_traces}_s{seed}"


def ensure_synthetic(n_traces: int = 2000, seed: int = 0, mixed: bool = False) -> Path:
    """Build the dataset into synthetic_path on first use (atomically); reuse it when present."""
    _check_arguments(n_traces, seed)
    target = synthetic_path(n_traces, seed, mixed)
    if _is_complete(target):
        return target
    if target.exists() and any(target.iterdir()):
        raise SeismicMLError(
            f"{target} exists but lacks metadata.csv or waveforms.hdf5; delete it to rebuild"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    kind = "mixed-rate synthetic" if mixed else "synthetic"
    progress.note(f"building the {kind} set ({n_traces} traces, seed {seed}) into {target}")
    try:
        write_synthetic(tmp, n_traces, seed, mixed)
        os.replace(tmp, target)
        progress.note(f"built {target}")
    except OSError:
        if not _is_complete(target):  # else another process finished the same build first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_synthetic(
    out_dir: Path, n_traces: int = 2000, seed: int = 0, mixed: bool = False
) -> Path:
    """Write the dataset into out_dir (metadata.csv + waveforms.hdf5); deterministic for (n, seed).

    trace_snr_db = 10 log10(S / N), S the mean power of the noise-free signal summed over Z, N
    and E in samples [p, p + 300) and N that of the noise alone in [p - 500, p - 50), with
    p = floor(trace_P_arrival_sample): a 3 s window from the P onset against 4.5 s before it.
    In the mixed set (mixed=True) the same seconds, measured on the 100 Hz synthesis.
    """
    from seisbench.data import WaveformDataWriter

    _check_arguments(n_traces, seed)
    out_dir = Path(out_dir)
    plan_seq, wave_seq, mixed_seq = np.random.SeedSequence(seed).spawn(3)
    plan = _plan(np.random.default_rng(plan_seq), n_traces)
    if mixed:
        plan = _mix(np.random.default_rng(mixed_seq), plan)
    network = _network()
    chunks = range(0, n_traces, _CHUNK)
    rngs = [np.random.default_rng(s) for s in wave_seq.spawn(len(chunks))]
    build = _mixed_chunk if mixed else _plain_chunk
    with WaveformDataWriter(out_dir / "metadata.csv", out_dir / "waveforms.hdf5") as writer:
        writer.data_format = _data_format()
        for start, rng in zip(chunks, rngs, strict=True):
            records, waveforms = build(plan.iloc[start : start + _CHUNK].copy(), network, rng)
            for record, waveform in zip(records, waveforms, strict=True):
                writer.add_trace(record, waveform)
    return out_dir


def _plain_chunk(
    rows: pd.DataFrame, network: _Network, rng: np.random.Generator
) -> tuple[list[dict], list[np.ndarray]]:
    """Records and integer-count waveforms (3, TRACE_SAMPLES) of some rows of the plain set."""
    counts, snr = _synthesize(rows, network, rng)
    rows["trace_snr_db"] = np.round(snr, 3)
    return _metadata(rows, network), list(np.round(counts).astype(np.float32))


def _mixed_chunk(
    rows: pd.DataFrame, network: _Network, rng: np.random.Generator
) -> tuple[list[dict], list[np.ndarray]]:
    """Records and waveforms of some rows of the mixed set, each at its own rate and length."""
    waveforms: list[np.ndarray] = [np.empty(0)] * len(rows)
    snr = np.full(len(rows), np.nan)
    n_samples = rows["n_samples"].to_numpy()
    for n in np.unique(n_samples):  # one synthesis per trace length
        at = np.flatnonzero(n_samples == n)
        counts, snr[at] = _synthesize(rows.iloc[at], network, rng, int(n))
        for i, x in zip(at, counts, strict=True):
            waveforms[i] = _at_rate(x, rows["stored_rate"].iat[i])
    rows["trace_snr_db"] = np.round(snr, 3)
    return _mixed_metadata(rows, network), waveforms


def _at_rate(counts: np.ndarray, rate: float) -> np.ndarray:
    """Integer counts (float32) of a (3, n) SAMPLING_RATE trace, resampled band-limited to rate.

    The 100 Hz synthesis stands for ground motion band-limited below 50 Hz (the attenuation
    filter leaves little above 20 Hz, the noise falls with frequency). A 200 Hz channel records
    that same motion: its sinc interpolation, with nothing new between 50 and 100 Hz. A 50 Hz
    channel is what a digitiser delivers after its linear-phase anti-alias FIR and decimation,
    which is what resample_poly(x, 1, 2) does (cut-off 25 Hz, where the signal is weak). Both
    filters are linear-phase, so no arrival moves: picks scale with the rate, times stay. Counts
    are rounded after resampling, as a digitiser quantises at its output rate.
    """
    ratio = Fraction(float(rate) / SAMPLING_RATE).limit_denominator(100)
    if ratio != 1:
        up, down = ratio.numerator, ratio.denominator
        counts = sps.resample_poly(counts, up, down, axis=-1, padtype="line")
    return np.round(counts).astype(np.float32)


def _check_arguments(n_traces: int, seed: int) -> None:
    """Raise SeismicMLError for a dataset size or seed that cannot be built."""
    if not isinstance(n_traces, (int, np.integer)) or n_traces < 10:
        raise SeismicMLError(f"synthetic dataset needs n_traces >= 10, got {n_traces!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SeismicMLError(f"synthetic dataset needs a seed >= 0, got {seed!r}")


def _is_complete(path: Path) -> bool:
    """Whether path holds both files of a seisbench dataset."""
    return (path / "metadata.csv").is_file() and (path / "waveforms.hdf5").is_file()


def _data_format() -> dict:
    """seisbench data_format of the synthetic traces."""
    return {
        "dimension_order": "CW",
        "component_order": "ZNE",
        "sampling_rate": SAMPLING_RATE,
        "measurement": "velocity",
        "unit": "counts",
        "instrument_response": f"flat, {GAIN_COUNTS_PER_M_S:g} counts per m/s",
    }


@dataclass(frozen=True)
class _Network:
    """Fixed station properties; site_term (log10 amplitude) is never written to metadata."""

    codes: np.ndarray
    site_term: np.ndarray
    noise_counts: np.ndarray
    noise_slope: np.ndarray
    kappa_s: np.ndarray


def _network() -> _Network:
    """The same ~40-station network for every seed."""
    rng = np.random.default_rng(_NETWORK_SEED)
    n = N_STATIONS
    return _Network(
        codes=np.array([f"S{i:03d}" for i in range(1, n + 1)]),
        site_term=_centred(np.clip(rng.normal(0.0, _SITE_SIGMA, n), -0.4, 0.4)),
        noise_counts=10 ** rng.uniform(0.0, 1.2, n),
        noise_slope=rng.uniform(0.5, 1.5, n),
        kappa_s=rng.uniform(0.02, 0.04, n),
    )


def _centred(x: np.ndarray) -> np.ndarray:
    """x minus its mean: station corrections of a calibrated network average to zero."""
    return x - x.mean()


# ---------------------------------------------------------------- the plan: one row per trace


def _plan(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Draw every trace's event, station, geometry, timing and split."""
    n_noise = max(1, round(NOISE_FRACTION * n))
    events = _draw_events(rng, n - n_noise)
    quakes = _draw_quake_traces(rng, events)
    noise = _draw_noise_traces(rng, n_noise)
    is_noise = np.zeros(n, dtype=bool)
    is_noise[rng.choice(n, n_noise, replace=False)] = True
    order = np.empty(n, dtype=int)
    order[~is_noise] = np.arange(n - n_noise)
    order[is_noise] = n - n_noise + np.arange(n_noise)
    plan = pd.concat([quakes, noise], ignore_index=True).iloc[order].reset_index(drop=True)
    plan["is_noise"] = is_noise
    plan["split"] = _splits(rng, plan)
    return plan


def _magnitudes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gutenberg-Richter (b = 1) on 0.5..5.5, thinned below completeness like a real catalogue."""
    lo, hi = _MAG_RANGE
    m = np.linspace(lo, hi, 2001)
    density = 10 ** (-_B_VALUE * m) * special.ndtr((m - _COMPLETENESS) / _COMPLETENESS_WIDTH)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2.0)])
    return np.interp(rng.random(n), cdf / cdf[-1], m)


def _detection_distance(magnitude: np.ndarray) -> np.ndarray:
    """Hypocentral distance at which the predicted Wood-Anderson amplitude falls to _MIN_WA_MM."""
    r = np.linspace(1.0, 400.0, 4000)
    return np.interp(magnitude - np.log10(_MIN_WA_MM), hutton_boore_minus_log_a0(r), r)


def _draw_events(rng: np.random.Generator, n_traces: int) -> pd.DataFrame:
    """Events, in time order, with as many station recordings in all as n_traces."""
    m = _magnitudes(rng, n_traces)
    depth = rng.uniform(*_DEPTH_RANGE_KM, n_traces)
    r_min = np.maximum(_DIST_RANGE_KM[0], depth)
    r_max = np.clip(_detection_distance(m), r_min + 5.0, _DIST_RANGE_KM[1])
    n_sta = 1 + rng.binomial(N_STATIONS - 1, 0.25 * (r_max / _DIST_RANGE_KM[1]) ** 2)
    last = int(np.searchsorted(np.cumsum(n_sta), n_traces))
    n_sta = n_sta[: last + 1]
    n_sta[-1] -= n_sta.sum() - n_traces
    origin = np.sort(np.round(rng.uniform(0.0, _YEAR_S, last + 1), 2))
    log_sd = rng.normal(0.0, _STRESS_DROP_LOG10_SIGMA, last + 1)
    return pd.DataFrame(
        {
            "source_id": [f"sy{i:06d}" for i in range(last + 1)],
            "magnitude": np.round(m[: last + 1], 2),
            "depth_km": np.round(depth[: last + 1], 2),
            "r_min": r_min[: last + 1],
            "r_max": r_max[: last + 1],
            "n_stations": n_sta,
            "origin_s": origin,
            "log10_stress_drop": log_sd,
        }
    )


def _draw_quake_traces(rng: np.random.Generator, events: pd.DataFrame) -> pd.DataFrame:
    """One row per (event, station) recording, with distances and picks."""
    order = np.argsort(rng.random((len(events), N_STATIONS)), axis=1)
    n_sta = events["n_stations"].to_numpy()
    station = np.concatenate([order[i, :k] for i, k in enumerate(n_sta)])
    tr = events.loc[events.index.repeat(n_sta)].reset_index(drop=True)
    tr["station"] = station
    r = np.round(rng.uniform(tr["r_min"], tr["r_max"]), 3)
    tr["hyp_km"] = r
    tr["epi_km"] = np.round(np.sqrt(np.maximum(r**2 - tr["depth_km"] ** 2, 0.0)), 3)
    tr["back_azimuth"] = np.round(rng.uniform(0.0, 360.0, len(tr)), 1)
    p_wanted = rng.uniform(*_P_RANGE, len(tr))
    start = _round_us(tr["origin_s"] + r / VP_KM_S - p_wanted / SAMPLING_RATE)
    tr["start_s"] = start
    tr["p_sample"] = (tr["origin_s"] + r / VP_KM_S - start) * SAMPLING_RATE
    tr["s_sample"] = tr["p_sample"] + r * (1.0 / VS_KM_S - 1.0 / VP_KM_S) * SAMPLING_RATE
    tr["path_scatter"] = rng.normal(0.0, _PATH_SIGMA, len(tr))
    tr["log10_ps_scatter"] = rng.normal(0.0, 0.1, len(tr))
    return tr.drop(columns=["r_min", "r_max", "n_stations"])


def _draw_noise_traces(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Noise-only recordings at random stations and times."""
    return pd.DataFrame(
        {
            "station": rng.integers(0, N_STATIONS, n),
            "start_s": np.sort(_round_us(rng.uniform(0.0, _YEAR_S, n))),
        }
    )


def _round_us(seconds: np.ndarray) -> np.ndarray:
    """Round to whole microseconds, the resolution of the written time stamps."""
    return np.round(np.asarray(seconds, dtype=float) * 1e6) / 1e6


def _splits(rng: np.random.Generator, plan: pd.DataFrame) -> np.ndarray:
    """70/10/20 train/dev/test by trace count, whole events kept in one split."""
    split = np.empty(len(plan), dtype=object)
    quake = ~plan["is_noise"].to_numpy()
    ids = plan.loc[quake, "source_id"].to_numpy()
    events, counts = np.unique(ids, return_counts=True)
    perm = rng.permutation(len(events))
    done = np.cumsum(counts[perm]) - counts[perm] / 2.0
    by_event = dict(zip(events[perm], _split_names(done / counts.sum()), strict=True))
    split[quake] = [by_event[i] for i in ids]
    n_noise = int((~quake).sum())
    split[~quake] = _split_names((rng.permutation(n_noise) + 0.5) / n_noise)
    return split


def _split_names(fraction: np.ndarray) -> np.ndarray:
    """Split name for each position (0..1) along a shuffled list."""
    edges = np.cumsum([share for _, share in _SPLITS])[:-1]
    return np.array([name for name, _ in _SPLITS], dtype=object)[np.searchsorted(edges, fraction)]


def _mix(rng: np.random.Generator, plan: pd.DataFrame) -> pd.DataFrame:
    """plan plus each trace's rate, length, pick columns and missing magnitude (mixed set)."""
    plan = plan.copy()
    n = len(plan)
    plan["rate"] = _rates(rng, plan["split"].to_numpy())
    plan["stored_rate"] = plan["rate"].fillna(SAMPLING_RATE)
    long = np.zeros(n, dtype=bool)
    long[rng.choice(n, round(_LONG_FRACTION * n), replace=False)] = True
    plan["n_samples"] = np.where(long, _LONG_SAMPLES, TRACE_SAMPLES)
    quake = ~plan["is_noise"].to_numpy()
    plan["p_name"] = _pick_names(rng, quake, _P_NAMES, 0.0)
    plan["s_name"] = _pick_names(rng, quake, _S_NAMES, _UNPICKED_S_FRACTION)
    plan["no_magnitude"] = _without_magnitude(rng, plan)
    return plan


def _rates(rng: np.random.Generator, split: np.ndarray) -> np.ndarray:
    """Each trace's rate (NaN: not written), in _MIXED_RATES' shares within every split."""
    rates = np.full(len(split), np.nan)
    edges = np.cumsum([share for _, share in _MIXED_RATES])[:-1]
    values = np.array([rate for rate, _ in _MIXED_RATES])
    for name, _ in _SPLITS:
        at = np.flatnonzero(split == name)
        rates[at] = values[np.searchsorted(edges, (rng.permutation(len(at)) + 0.5) / len(at))]
    return rates


def _pick_names(
    rng: np.random.Generator, quake: np.ndarray, names: tuple[str, str], unpicked: float
) -> np.ndarray:
    """Which of names holds each event trace's pick: half each of those picked, '' if none."""
    out = np.full(len(quake), "", dtype=object)
    at = np.flatnonzero(quake)
    position = (rng.permutation(len(at)) + 0.5) / len(at)
    name = np.where(position < (1.0 + unpicked) / 2.0, names[0], names[1])
    out[at] = np.where(position < unpicked, "", name)
    return out


def _without_magnitude(rng: np.random.Generator, plan: pd.DataFrame) -> np.ndarray:
    """Traces of whole events, about _NO_MAGNITUDE_FRACTION of event traces, left unrated."""
    quake = ~plan["is_noise"].to_numpy()
    events, counts = np.unique(plan.loc[quake, "source_id"].to_numpy(), return_counts=True)
    room = _NO_MAGNITUDE_FRACTION * counts.sum()
    chosen = []
    for k in rng.permutation(len(events)):
        if counts[k] <= room:
            chosen.append(events[k])
            room -= counts[k]
    return plan["source_id"].isin(chosen).to_numpy() & quake


# ---------------------------------------------------------------- waveforms


def _synthesize(
    rows: pd.DataFrame, network: _Network, rng: np.random.Generator, n: int = TRACE_SAMPLES
) -> tuple[np.ndarray, np.ndarray]:
    """Unrounded counts (k, 3, n) at SAMPLING_RATE and the SNR (dB, NaN for noise) of each row."""
    station = rows["station"].to_numpy(dtype=int)
    noise = _noise_counts(rng, network, station, n)
    signal = np.zeros_like(noise)
    quake = ~rows["is_noise"].to_numpy()
    if quake.any():
        signal[quake] = _quake_velocity(rng, rows[quake], network, n) * GAIN_COUNTS_PER_M_S
    snr = np.full(len(rows), np.nan)
    snr[quake] = _snr_db(signal[quake], noise[quake], rows.loc[quake, "p_sample"].to_numpy())
    return signal + noise, snr


def _nfft(n: int) -> int:
    """FFT length for n-sample traces: _NFFT for 60 s, else a power of two with as much room."""
    return max(_NFFT, 2 ** int(np.ceil(np.log2(n + _NFFT - TRACE_SAMPLES))))


def _snr_db(signal: np.ndarray, noise: np.ndarray, p_sample: np.ndarray) -> np.ndarray:
    """SNR as defined in write_synthetic's docstring."""
    p0 = np.floor(p_sample).astype(int)
    sig = _window_power(signal, p0, *_SIGNAL_WINDOW)
    return 10.0 * np.log10(sig / _window_power(noise, p0, *_NOISE_WINDOW))


def _window_power(x: np.ndarray, p0: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Mean square over [p0 + lo, p0 + hi), summed over components, per trace."""
    idx = p0[:, None] + np.arange(lo, hi)[None, :]
    win = np.take_along_axis(x, idx[:, None, :], axis=2)
    return (win**2).mean(axis=2).sum(axis=1)


def _noise_counts(
    rng: np.random.Generator, network: _Network, station: np.ndarray, n: int = TRACE_SAMPLES
) -> np.ndarray:
    """Stationary coloured noise (power ~ f^-slope above 0.3 Hz), station level in counts rms."""
    white = rng.standard_normal((len(station), 3, n))
    f = np.fft.rfftfreq(n, 1.0 / SAMPLING_RATE)
    f[0] = f[1]
    slope = network.noise_slope[station][:, None, None]
    shape = f ** (-slope / 2.0) * (f / 0.3) ** 2 / (1.0 + (f / 0.3) ** 2)
    shape[..., 0] = 0.0
    x = np.fft.irfft(np.fft.rfft(white) * shape, n=n)
    x /= x.std(axis=2, keepdims=True)
    level = network.noise_counts[station] * 10 ** rng.normal(0.0, 0.1, len(station))
    return x * level[:, None, None]


def _quake_velocity(
    rng: np.random.Generator, rows: pd.DataFrame, network: _Network, n: int = TRACE_SAMPLES
) -> np.ndarray:
    """Noise-free ground velocity (m/s) of n samples, P plus S, scaled to the magnitude relation."""
    f = np.fft.rfftfreq(_nfft(n), 1.0 / SAMPLING_RATE)
    r = rows["hyp_km"].to_numpy(dtype=float)
    kappa = network.kappa_s[rows["station"].to_numpy(dtype=int)]
    fc_s = _corner_frequency(rows["magnitude"].to_numpy(dtype=float), rows["log10_stress_drop"])
    baz = np.deg2rad(rows["back_azimuth"].to_numpy(dtype=float))
    t_s = 0.5 / fc_s + 0.05 * r + 0.2
    coda_s = 1.0 + 0.03 * r
    spec_p = _phase_spectrum(rng, rows["p_sample"], 0.5 * t_s, 0.6 * coda_s, _P_MIX, baz, n)
    spec_p *= _transfer(f, 1.5 * fc_s, r / (_Q * VP_KM_S) + kappa)
    spec_s = _phase_spectrum(rng, rows["s_sample"], t_s, coda_s, _S_MIX, baz, n)
    spec_s *= _transfer(f, fc_s, r / (_Q * VS_KM_S) + kappa)
    spec_p *= _p_scale(spec_p, spec_s, rows["log10_ps_scatter"].to_numpy(dtype=float), n)
    spec = spec_p + spec_s
    target_mm = 10 ** _target_log10_wa_mm(rows, network)
    scale = target_mm / _wa_peak_mm(spec[:, 1:3], f, n)
    return np.fft.irfft(spec, n=_nfft(n))[..., :n] * scale[:, None, None]


def _target_log10_wa_mm(rows: pd.DataFrame, network: _Network) -> np.ndarray:
    """log10 of the Wood-Anderson peak (mm): ML relation, site term, stress drop, path scatter."""
    m = rows["magnitude"].to_numpy(dtype=float)
    site = network.site_term[rows["station"].to_numpy(dtype=int)]
    # a Brune displacement pulse's peak grows with stress drop as (stress drop)^(1/3)
    event = rows["log10_stress_drop"].to_numpy(dtype=float) / 3.0
    path = rows["path_scatter"].to_numpy(dtype=float)
    return m - hutton_boore_minus_log_a0(rows["hyp_km"].to_numpy(dtype=float)) + site + event + path


def _corner_frequency(magnitude: np.ndarray, log10_stress_drop: pd.Series) -> np.ndarray:
    """Brune S corner frequency (Hz) from Mw = ML and the event's stress drop."""
    moment = 10 ** (1.5 * magnitude + 9.1)
    stress = _STRESS_DROP_PA * 10 ** np.asarray(log10_stress_drop, dtype=float)
    return 0.4906 * VS_KM_S * 1000.0 * (stress / moment) ** (1.0 / 3.0)


def _phase_spectrum(
    rng: np.random.Generator,
    onset: pd.Series,
    duration_s: np.ndarray,
    coda_s: np.ndarray,
    mix: np.ndarray,
    baz: np.ndarray,
    n: int = TRACE_SAMPLES,
) -> np.ndarray:
    """Spectrum (k, 3, _nfft(n) // 2 + 1) of envelope-shaped noise on Z, N, E for one phase."""
    env = _envelope(np.asarray(onset, dtype=float) / SAMPLING_RATE, duration_s, coda_s, n)
    base = rng.standard_normal((len(baz), mix.shape[1], n)) * env[:, None, :]
    zne = np.einsum("kcr,rm->kcm", _rotation_zrt_to_zne(baz), mix)
    return np.fft.rfft(np.einsum("kcm,kmt->kct", zne, base), n=_nfft(n))


def _envelope(
    onset_s: np.ndarray, duration_s: np.ndarray, coda_s: np.ndarray, n: int = TRACE_SAMPLES
) -> np.ndarray:
    """Zero before the onset, a smooth rise, a plateau of duration_s, then exponential coda."""
    tau = np.arange(n)[None, :] / SAMPLING_RATE - onset_s[:, None]
    lag = np.clip(tau, 0.0, None) / (0.05 + 0.1 * duration_s[:, None])
    decay = np.exp(-np.clip(tau - duration_s[:, None], 0.0, None) / coda_s[:, None])
    return lag**2 / (1.0 + lag**2) * decay


def _rotation_zrt_to_zne(baz: np.ndarray) -> np.ndarray:
    """Per-trace matrices taking Z, radial (away from the source), transverse to Z, N, E."""
    az = baz + np.pi
    rot = np.zeros((len(baz), 3, 3))
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = np.cos(az), -np.sin(az)
    rot[:, 2, 1], rot[:, 2, 2] = np.sin(az), np.cos(az)
    return rot


def _transfer(f: np.ndarray, fc: np.ndarray, t_star: np.ndarray) -> np.ndarray:
    """Brune velocity pulse times a two-pole stand-in for exp(-pi f t*), both causal."""
    # bilinear s-to-z map: a causal digital filter, so nothing leaks ahead of the onset
    w = 2j * SAMPLING_RATE * np.tan(np.pi * np.minimum(f, 0.4999 * SAMPLING_RATE) / SAMPLING_RATE)
    w = w[None, :]
    wc = 2.0 * np.pi * fc[:, None]
    w_att = 2.0 / t_star[:, None]  # 2 pi f_att, f_att = 1 / (pi t*)
    h = w * wc / (wc + w) ** 2 / (1.0 + w / w_att) ** 2
    h[:, -1] = 0.0
    return h[:, None, :]


def _p_scale(
    spec_p: np.ndarray, spec_s: np.ndarray, log10_scatter: np.ndarray, n: int = TRACE_SAMPLES
) -> np.ndarray:
    """Factor making the P peak 1/_S_TO_P of the S peak (over all components), with scatter."""
    peak_p = np.abs(np.fft.irfft(spec_p, n=_nfft(n))[..., :n]).max(axis=(1, 2))
    peak_s = np.abs(np.fft.irfft(spec_s, n=_nfft(n))[..., :n]).max(axis=(1, 2))
    return (peak_s / (_S_TO_P * peak_p) * 10**log10_scatter)[:, None, None]


def _wa_peak_mm(spec_velocity: np.ndarray, f: np.ndarray, n: int = TRACE_SAMPLES) -> np.ndarray:
    """Peak Wood-Anderson amplitude (mm) of velocity spectra in m/s, max over components."""
    s = 2j * np.pi * f
    paz = WOOD_ANDERSON_PAZ_VELOCITY
    h = paz["sensitivity"] * s / ((s - paz["poles"][0]) * (s - paz["poles"][1]))
    wa = np.fft.irfft(spec_velocity * h, n=_nfft(n))[..., :n]
    return np.abs(wa).max(axis=(1, 2)) * 1000.0


# ---------------------------------------------------------------- metadata


def _metadata(plan: pd.DataFrame, network: _Network) -> list[dict]:
    """seisbench metadata records, one per trace, in plan order."""
    return _metadata_frame(plan, network).to_dict("records")


def _metadata_frame(plan: pd.DataFrame, network: _Network) -> pd.DataFrame:
    """The plain set's metadata, one row per trace, in plan order."""
    quake = ~plan["is_noise"].to_numpy()
    origin = np.where(quake, _iso(plan["origin_s"].fillna(0.0)), "")
    station = network.codes[plan["station"].to_numpy(dtype=int)]
    meta = pd.DataFrame(
        {
            "trace_name": [f"{NETWORK_CODE}.{s}_{i:06d}" for i, s in zip(plan.index, station)],
            "network_code": NETWORK_CODE,
            "station_network_code": NETWORK_CODE,
            "station_code": station,
            "station_id": [f"{NETWORK_CODE}.{s}" for s in station],
            "trace_category": np.where(quake, "earthquake", "noise"),
            "split": plan["split"].to_numpy(),
            "source_id": plan["source_id"].fillna("").to_numpy(),
            "source_origin_time": origin,
            "source_magnitude": plan["magnitude"].to_numpy(dtype=float),
            "source_magnitude_type": np.where(quake, "ML", ""),
            "source_depth_km": plan["depth_km"].to_numpy(dtype=float),
            "path_hyp_distance_km": plan["hyp_km"].to_numpy(dtype=float),
            "path_ep_distance_km": plan["epi_km"].to_numpy(dtype=float),
            "path_back_azimuth_deg": plan["back_azimuth"].to_numpy(dtype=float),
            "trace_P_arrival_sample": np.round(plan["p_sample"].to_numpy(dtype=float), 4),
            "trace_S_arrival_sample": np.round(plan["s_sample"].to_numpy(dtype=float), 4),
            "trace_snr_db": plan["trace_snr_db"].to_numpy(dtype=float),
            "trace_start_time": _iso(plan["start_s"]),
            "trace_sampling_rate_hz": SAMPLING_RATE,
            "trace_npts": TRACE_SAMPLES,
        }
    )
    return meta


def _mixed_metadata(plan: pd.DataFrame, network: _Network) -> list[dict]:
    """Plain records with ETHZ-style picks, each trace's rate and npts, some magnitudes unset."""
    meta = _metadata_frame(plan, network)
    scale = plan["stored_rate"].to_numpy(dtype=float) / SAMPLING_RATE
    meta["trace_sampling_rate_hz"] = plan["rate"].to_numpy(dtype=float)
    meta["trace_npts"] = np.round(plan["n_samples"].to_numpy() * scale).astype(int)
    unrated = plan["no_magnitude"].to_numpy()
    meta.loc[unrated, "source_magnitude"] = np.nan
    meta.loc[unrated, "source_magnitude_type"] = ""
    at = meta.columns.get_loc("trace_P_arrival_sample")
    meta = meta.drop(columns=["trace_P_arrival_sample", "trace_S_arrival_sample"])
    for phase, names in (("p", _P_NAMES), ("s", _S_NAMES)):
        pick = np.round(plan[f"{phase}_sample"].to_numpy(dtype=float) * scale, 4)
        for name in names:
            chosen = (plan[f"{phase}_name"] == name).to_numpy()
            meta.insert(at, f"trace_{name}_arrival_sample", np.where(chosen, pick, np.nan))
            at += 1
    return meta.to_dict("records")


def _iso(seconds: pd.Series) -> np.ndarray:
    """ISO-8601 strings (microseconds, UTC) of seconds after the synthetic epoch."""
    us = np.round(seconds.to_numpy(dtype=float) * 1e6).astype(np.int64)
    return np.datetime_as_string(_EPOCH + us.astype("timedelta64[us]"), unit="us")
