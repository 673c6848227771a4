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
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
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


def synthetic_path(n_traces: int, seed: int = 0) -> Path:
    """Where the dataset lives in the seisbench cache."""
    import seisbench

    return Path(seisbench.cache_root) / "datasets" / f"synthetic_{n_traces}_s{seed}"


def ensure_synthetic(n_traces: int = 2000, seed: int = 0) -> Path:
    """Build the dataset into synthetic_path on first use (atomically); reuse it when present."""
    _check_arguments(n_traces, seed)
    target = synthetic_path(n_traces, seed)
    if _is_complete(target):
        return target
    if target.exists() and any(target.iterdir()):
        raise SeismicMLError(
            f"{target} exists but lacks metadata.csv or waveforms.hdf5; delete it to rebuild"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    progress.note(f"building the synthetic set ({n_traces} traces, seed {seed}) into {target}")
    try:
        write_synthetic(tmp, n_traces, seed)
        os.replace(tmp, target)
        progress.note(f"built {target}")
    except OSError:
        if not _is_complete(target):  # else another process finished the same build first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_synthetic(out_dir: Path, n_traces: int = 2000, seed: int = 0) -> Path:
    """Write the dataset into out_dir (metadata.csv + waveforms.hdf5); deterministic for (n, seed).

    trace_snr_db = 10 log10(S / N), S the mean power of the noise-free signal summed over Z, N
    and E in samples [p, p + 300) and N that of the noise alone in [p - 500, p - 50), with
    p = floor(trace_P_arrival_sample): a 3 s window from the P onset against 4.5 s before it.
    """
    from seisbench.data import WaveformDataWriter

    _check_arguments(n_traces, seed)
    out_dir = Path(out_dir)
    plan_seq, wave_seq = np.random.SeedSequence(seed).spawn(2)
    plan = _plan(np.random.default_rng(plan_seq), n_traces)
    network = _network()
    chunks = range(0, n_traces, _CHUNK)
    rngs = [np.random.default_rng(s) for s in wave_seq.spawn(len(chunks))]
    with WaveformDataWriter(out_dir / "metadata.csv", out_dir / "waveforms.hdf5") as writer:
        writer.data_format = _data_format()
        for start, rng in zip(chunks, rngs, strict=True):
            rows = plan.iloc[start : start + _CHUNK].copy()
            counts, snr = _synthesize(rows, network, rng)
            rows["trace_snr_db"] = np.round(snr, 3)
            for record, waveform in zip(_metadata(rows, network), counts, strict=True):
                writer.add_trace(record, waveform)
    return out_dir


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


# ---------------------------------------------------------------- waveforms


def _synthesize(
    rows: pd.DataFrame, network: _Network, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Integer counts (k, 3, TRACE_SAMPLES) float32 and the SNR (dB, NaN for noise) of each row."""
    station = rows["station"].to_numpy(dtype=int)
    noise = _noise_counts(rng, network, station)
    signal = np.zeros_like(noise)
    quake = ~rows["is_noise"].to_numpy()
    if quake.any():
        signal[quake] = _quake_velocity(rng, rows[quake], network) * GAIN_COUNTS_PER_M_S
    snr = np.full(len(rows), np.nan)
    snr[quake] = _snr_db(signal[quake], noise[quake], rows.loc[quake, "p_sample"].to_numpy())
    return np.round(signal + noise).astype(np.float32), snr


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


def _noise_counts(rng: np.random.Generator, network: _Network, station: np.ndarray) -> np.ndarray:
    """Stationary coloured noise (power ~ f^-slope above 0.3 Hz), station level in counts rms."""
    white = rng.standard_normal((len(station), 3, TRACE_SAMPLES))
    f = np.fft.rfftfreq(TRACE_SAMPLES, 1.0 / SAMPLING_RATE)
    f[0] = f[1]
    slope = network.noise_slope[station][:, None, None]
    shape = f ** (-slope / 2.0) * (f / 0.3) ** 2 / (1.0 + (f / 0.3) ** 2)
    shape[..., 0] = 0.0
    x = np.fft.irfft(np.fft.rfft(white) * shape, n=TRACE_SAMPLES)
    x /= x.std(axis=2, keepdims=True)
    level = network.noise_counts[station] * 10 ** rng.normal(0.0, 0.1, len(station))
    return x * level[:, None, None]


def _quake_velocity(rng: np.random.Generator, rows: pd.DataFrame, network: _Network) -> np.ndarray:
    """Noise-free ground velocity (m/s), P plus S, scaled to the magnitude relation."""
    f = np.fft.rfftfreq(_NFFT, 1.0 / SAMPLING_RATE)
    r = rows["hyp_km"].to_numpy(dtype=float)
    kappa = network.kappa_s[rows["station"].to_numpy(dtype=int)]
    fc_s = _corner_frequency(rows["magnitude"].to_numpy(dtype=float), rows["log10_stress_drop"])
    baz = np.deg2rad(rows["back_azimuth"].to_numpy(dtype=float))
    t_s = 0.5 / fc_s + 0.05 * r + 0.2
    coda_s = 1.0 + 0.03 * r
    spec_p = _phase_spectrum(rng, rows["p_sample"], 0.5 * t_s, 0.6 * coda_s, _P_MIX, baz)
    spec_p *= _transfer(f, 1.5 * fc_s, r / (_Q * VP_KM_S) + kappa)
    spec_s = _phase_spectrum(rng, rows["s_sample"], t_s, coda_s, _S_MIX, baz)
    spec_s *= _transfer(f, fc_s, r / (_Q * VS_KM_S) + kappa)
    spec_p *= _p_scale(spec_p, spec_s, rows["log10_ps_scatter"].to_numpy(dtype=float))
    spec = spec_p + spec_s
    target_mm = 10 ** _target_log10_wa_mm(rows, network)
    scale = target_mm / _wa_peak_mm(spec[:, 1:3], f)
    return np.fft.irfft(spec, n=_NFFT)[..., :TRACE_SAMPLES] * scale[:, None, None]


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
) -> np.ndarray:
    """Spectrum (k, 3, _NFFT // 2 + 1) of envelope-shaped white noise on Z, N, E for one phase."""
    env = _envelope(np.asarray(onset, dtype=float) / SAMPLING_RATE, duration_s, coda_s)
    base = rng.standard_normal((len(baz), mix.shape[1], TRACE_SAMPLES)) * env[:, None, :]
    zne = np.einsum("kcr,rm->kcm", _rotation_zrt_to_zne(baz), mix)
    return np.fft.rfft(np.einsum("kcm,kmt->kct", zne, base), n=_NFFT)


def _envelope(onset_s: np.ndarray, duration_s: np.ndarray, coda_s: np.ndarray) -> np.ndarray:
    """Zero before the onset, a smooth rise, a plateau of duration_s, then exponential coda."""
    tau = np.arange(TRACE_SAMPLES)[None, :] / SAMPLING_RATE - onset_s[:, None]
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


def _p_scale(spec_p: np.ndarray, spec_s: np.ndarray, log10_scatter: np.ndarray) -> np.ndarray:
    """Factor making the P peak 1/_S_TO_P of the S peak (over all components), with scatter."""
    peak_p = np.abs(np.fft.irfft(spec_p, n=_NFFT)[..., :TRACE_SAMPLES]).max(axis=(1, 2))
    peak_s = np.abs(np.fft.irfft(spec_s, n=_NFFT)[..., :TRACE_SAMPLES]).max(axis=(1, 2))
    return (peak_s / (_S_TO_P * peak_p) * 10**log10_scatter)[:, None, None]


def _wa_peak_mm(spec_velocity: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Peak Wood-Anderson amplitude (mm) of velocity spectra in m/s, max over components."""
    s = 2j * np.pi * f
    paz = WOOD_ANDERSON_PAZ_VELOCITY
    h = paz["sensitivity"] * s / ((s - paz["poles"][0]) * (s - paz["poles"][1]))
    wa = np.fft.irfft(spec_velocity * h, n=_NFFT)[..., :TRACE_SAMPLES]
    return np.abs(wa).max(axis=(1, 2)) * 1000.0


# ---------------------------------------------------------------- metadata


def _metadata(plan: pd.DataFrame, network: _Network) -> list[dict]:
    """seisbench metadata records, one per trace, in plan order."""
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
    return meta.to_dict("records")


def _iso(seconds: pd.Series) -> np.ndarray:
    """ISO-8601 strings (microseconds, UTC) of seconds after the synthetic epoch."""
    us = np.round(seconds.to_numpy(dtype=float) * 1e6).astype(np.int64)
    return np.datetime_as_string(_EPOCH + us.astype("timedelta64[us]"), unit="us")
