"""The synthetic generator: physics, metadata, determinism and the cache build."""

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seismic_ml.data import synthetic as syn
from seismic_ml.errors import SeismicMLError

N_TRACES = 300


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, np.ndarray, Path]:
    """One 300-trace build, loaded through seisbench: (metadata, waveforms (n, 3, 6000), path)."""
    import seisbench.data as sbd

    path = syn.write_synthetic(tmp_path_factory.mktemp("synthetic"), N_TRACES, seed=0)
    ds = sbd.WaveformDataset(path, sampling_rate=100, component_order="ZNE", cache="full")
    waveforms = np.stack([ds.get_waveforms(i) for i in range(len(ds))])
    return ds.metadata.reset_index(drop=True), waveforms, path


def _quakes(meta: pd.DataFrame) -> np.ndarray:
    return (meta["trace_category"] == "earthquake").to_numpy()


def _window_power(x: np.ndarray, start: int, stop: int) -> float:
    """Mean square over [start, stop), summed over the components."""
    return float((x[:, start:stop] ** 2).mean(axis=1).sum())


def _demeaned(x: np.ndarray, p0: int) -> np.ndarray:
    return x - x[:, p0 - 500 : p0 - 50].mean(axis=1, keepdims=True)


def test_hutton_boore_formula():
    assert syn.hutton_boore_minus_log_a0(100.0) == pytest.approx(3.0)
    assert syn.hutton_boore_minus_log_a0(10.0) == pytest.approx(-1.11 - 0.00189 * 90 + 3.0)
    np.testing.assert_allclose(syn.hutton_boore_minus_log_a0(np.array([100.0, 100.0])), 3.0)


def test_loads_with_seisbench_and_has_every_split(dataset):
    import seisbench.data as sbd

    meta, waveforms, path = dataset
    ds = sbd.WaveformDataset(path, sampling_rate=100, component_order="ZNE")
    assert ds.get_waveforms(0).shape == (3, 6000)
    assert len(ds) == N_TRACES
    assert set(meta["split"]) == {"train", "dev", "test"}
    assert 0.6 < (meta["split"] == "train").mean() < 0.8
    assert np.array_equal(waveforms, np.round(waveforms))  # integer counts
    assert set(meta["network_code"]) == {"SY"}
    assert 10 < meta["station_code"].nunique() <= syn.N_STATIONS


def test_an_event_never_spans_two_splits(dataset):
    meta, _, _ = dataset
    quakes = meta[_quakes(meta)]
    assert quakes["source_id"].nunique() > 10
    assert (quakes.groupby("source_id")["split"].nunique() == 1).all()


def test_station_terms_are_not_in_the_metadata(dataset):
    meta, _, _ = dataset
    assert not [c for c in meta.columns if "site" in c or "gain" in c or "term" in c]


def test_metadata_ranges(dataset):
    meta, _, _ = dataset
    q = meta[_quakes(meta)]
    assert q["source_magnitude"].between(0.5, 5.5).all()
    assert q["source_magnitude"].max() - q["source_magnitude"].min() > 1.5
    assert q["path_hyp_distance_km"].between(5.0, 150.0).all()
    assert (q["path_ep_distance_km"] <= q["path_hyp_distance_km"]).all()
    r2 = q["path_ep_distance_km"] ** 2 + q["source_depth_km"] ** 2
    np.testing.assert_allclose(np.sqrt(r2), q["path_hyp_distance_km"], atol=0.01)
    assert q["trace_P_arrival_sample"].between(500, 2500).all()
    assert (q["trace_S_arrival_sample"] < 6000 - 1000).all()
    assert (q["source_magnitude_type"] == "ML").all()


def test_s_minus_p_matches_the_distance(dataset):
    meta, _, _ = dataset
    q = meta[_quakes(meta)]
    expected = q["path_hyp_distance_km"] * (1 / syn.VS_KM_S - 1 / syn.VP_KM_S) * 100.0
    sp = q["trace_S_arrival_sample"] - q["trace_P_arrival_sample"]
    assert np.abs(sp - expected).max() <= 1.0


def test_p_arrival_matches_origin_and_start_time(dataset):
    meta, _, _ = dataset
    q = meta[_quakes(meta)]
    origin = pd.to_datetime(q["source_origin_time"])
    start = pd.to_datetime(q["trace_start_time"])
    travel_s = (origin - start).dt.total_seconds() + q["path_hyp_distance_km"] / syn.VP_KM_S
    assert np.abs(travel_s * 100.0 - q["trace_P_arrival_sample"]).max() < 0.01


def test_noise_traces_carry_no_picks_and_no_magnitude(dataset):
    meta, _, _ = dataset
    noise = meta[~_quakes(meta)]
    assert 0.05 < len(noise) / len(meta) < 0.15
    assert set(meta["trace_category"]) == {"earthquake", "noise"}
    for column in ["trace_P_arrival_sample", "trace_S_arrival_sample", "source_magnitude"]:
        assert noise[column].isna().all()
        assert meta.loc[_quakes(meta), column].notna().all()
    assert noise["source_magnitude_type"].isna().all()
    assert noise["trace_snr_db"].isna().all()


def test_snr_column_agrees_with_the_waveforms(dataset):
    meta, waveforms, _ = dataset
    checked = 0
    for i in np.flatnonzero(_quakes(meta) & (meta["trace_snr_db"] >= 0.0).to_numpy()):
        p0 = int(np.floor(meta.at[i, "trace_P_arrival_sample"]))
        x = _demeaned(waveforms[i].astype(float), p0)
        noise = _window_power(x, p0 - 500, p0 - 50)
        signal = _window_power(x, p0, p0 + 300) - noise
        assert 10 * np.log10(signal / noise) == pytest.approx(meta.at[i, "trace_snr_db"], abs=3.0)
        checked += 1
    assert checked > 100


def test_signal_is_causal_p_on_vertical_s_on_horizontals(dataset):
    meta, waveforms, _ = dataset
    strong = np.flatnonzero(_quakes(meta) & (meta["trace_snr_db"] > 25).to_numpy())
    assert len(strong) > 20
    for i in strong:
        p0 = int(np.floor(meta.at[i, "trace_P_arrival_sample"]))
        s0 = int(np.floor(meta.at[i, "trace_S_arrival_sample"]))
        x = _demeaned(waveforms[i].astype(float), p0)
        noise = _window_power(x, p0 - 500, p0 - 50)
        assert _window_power(x, p0 - 100, p0) < 2.0 * noise  # nothing ahead of the P onset
        p_end = min(p0 + 150, s0)
        assert _window_power(x[:1], p0, p_end) > _window_power(x[1:], p0, p_end) / 2
        assert _window_power(x[:1], s0, s0 + 300) < _window_power(x[1:], s0, s0 + 300) / 2
        p_peak = np.abs(x[:, p0:p_end]).max()
        assert np.abs(x[:, s0 : s0 + 500]).max() > 2.0 * p_peak
        coda = _window_power(x, s0 + 2000, s0 + 2300) if s0 + 2300 <= 6000 else noise
        assert coda < _window_power(x, s0, s0 + 300) / 10


def test_peak_s_amplitude_rises_one_decade_per_magnitude(dataset):
    meta, waveforms, _ = dataset
    rows = np.flatnonzero(_quakes(meta) & (meta["trace_snr_db"] > 10).to_numpy())
    log_amp = []
    for i in rows:
        p0 = int(np.floor(meta.at[i, "trace_P_arrival_sample"]))
        s0 = int(np.floor(meta.at[i, "trace_S_arrival_sample"]))
        x = _demeaned(waveforms[i].astype(float), p0)
        log_amp.append(np.log10(np.abs(x[1:, s0 : s0 + 500]).max()))
    m = meta.loc[rows, "source_magnitude"].to_numpy()
    log_r = np.log10(meta.loc[rows, "path_hyp_distance_km"].to_numpy())
    design = np.column_stack([np.ones_like(m), m, log_r])
    (_, per_magnitude, per_log_r), *_ = np.linalg.lstsq(design, np.array(log_amp), rcond=None)
    assert 0.8 <= per_magnitude <= 1.2
    assert per_log_r < -1.0


def test_wood_anderson_magnitude_recovers_the_catalogue(dataset):
    meta, waveforms, _ = dataset
    rows = np.flatnonzero(_quakes(meta))
    amp = np.array([syn.wood_anderson_peak_mm(waveforms[i], 100.0) for i in rows])
    r = meta.loc[rows, "path_hyp_distance_km"].to_numpy()
    residual = np.log10(amp) + syn.hutton_boore_minus_log_a0(r) - meta.loc[rows, "source_magnitude"]
    assert abs(residual.mean()) < 0.15
    assert 0.15 <= residual.std() <= 0.35


def test_stations_carry_a_hidden_amplitude_term(dataset):
    meta, waveforms, _ = dataset
    rows = np.flatnonzero(_quakes(meta) & (meta["trace_snr_db"] > 5).to_numpy())
    amp = np.array([syn.wood_anderson_peak_mm(waveforms[i], 100.0) for i in rows])
    r = meta.loc[rows, "path_hyp_distance_km"].to_numpy()
    residual = np.log10(amp) + syn.hutton_boore_minus_log_a0(r) - meta.loc[rows, "source_magnitude"]
    station = meta.loc[rows, "station_code"].to_numpy()
    groups = [residual[station == code] for code in np.unique(station)]
    groups = [g for g in groups if len(g) >= 5]
    assert len(groups) >= 10
    # one-way ANOVA: stations differ far beyond what the per-trace scatter explains
    assert stats.f_oneway(*groups).pvalue < 1e-4


def test_wood_anderson_helper_follows_the_documented_magnification():
    t = np.arange(6000) / 100.0
    ground_m = 1e-6 * np.sin(2 * np.pi * 5.0 * t) * np.hanning(6000)  # 1 um at 5 Hz
    velocity = np.gradient(ground_m, 0.01)
    trace = np.stack([np.zeros(6000), velocity, 0.5 * velocity]) * syn.GAIN_COUNTS_PER_M_S
    # at 5 Hz the Wood-Anderson response is within 4 % of its static magnification
    assert syn.wood_anderson_peak_mm(trace, 100.0) == pytest.approx(2800 * 1e-3, rel=0.05)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path / "waveforms.hdf5", "r") as f:
        return {name: f["data"][name][()] for name in f["data"]}


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path):
    a = syn.write_synthetic(tmp_path / "a", 40, seed=7)
    b = syn.write_synthetic(tmp_path / "b", 40, seed=7)
    c = syn.write_synthetic(tmp_path / "c", 40, seed=8)
    assert (a / "metadata.csv").read_bytes() == (b / "metadata.csv").read_bytes()
    arrays_a, arrays_b, arrays_c = _arrays(a), _arrays(b), _arrays(c)
    assert arrays_a.keys() == arrays_b.keys()
    assert all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)
    assert (a / "metadata.csv").read_bytes() != (c / "metadata.csv").read_bytes()
    assert not any(
        np.array_equal(arrays_a[k], arrays_c[k]) for k in arrays_a.keys() & arrays_c.keys()
    )


@pytest.mark.parametrize("n_traces, seed", [(9, 0), (0, 0), (100, -1)])
def test_invalid_size_or_seed_is_a_clear_error(tmp_path, n_traces, seed):
    with pytest.raises(SeismicMLError, match="n_traces|seed"):
        syn.write_synthetic(tmp_path, n_traces, seed)
    with pytest.raises(SeismicMLError):
        syn.ensure_synthetic(n_traces, seed)
    assert not list(tmp_path.iterdir())


def test_ensure_synthetic_builds_once_into_the_seisbench_cache():
    import seisbench

    path = syn.ensure_synthetic(20, seed=3)
    assert path == Path(seisbench.cache_root) / "datasets" / "synthetic_20_s3"
    assert path == syn.synthetic_path(20, seed=3)
    mtimes = {f.name: f.stat().st_mtime_ns for f in path.iterdir()}
    assert set(mtimes) == {"metadata.csv", "waveforms.hdf5"}
    assert syn.ensure_synthetic(20, seed=3) == path
    assert {f.name: f.stat().st_mtime_ns for f in path.iterdir()} == mtimes
    assert sorted(p.name for p in path.parent.iterdir() if "synthetic_20_s3" in p.name) == [
        "synthetic_20_s3"
    ]
    assert len(pd.read_csv(path / "metadata.csv")) == 20


def test_ensure_synthetic_refuses_a_foreign_folder_in_its_place():
    path = syn.synthetic_path(11, seed=0)
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("not a dataset")
    with pytest.raises(SeismicMLError, match="delete it"):
        syn.ensure_synthetic(11, seed=0)


# ---------------------------------------------------------------- the mixed-rate variant

N_MIXED = 200
PICKS = {"P": ["trace_Pg_arrival_sample", "trace_P1_arrival_sample"],
         "S": ["trace_Sg_arrival_sample", "trace_S1_arrival_sample"]}  # fmt: skip


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """One 200-trace mixed build: (metadata.csv as written, path)."""
    path = syn.write_synthetic(tmp_path_factory.mktemp("mixed"), N_MIXED, seed=0, mixed=True)
    return pd.read_csv(path / "metadata.csv"), path


def _at_100_hz(path: Path):
    """The set read at 100 Hz with empty rate cells filled from data_format, as loaders must."""
    import seisbench.data as sbd

    ds = sbd.WaveformDataset(path, sampling_rate=100, component_order="ZNE")
    unset = ds.metadata["trace_sampling_rate_hz"].isna()
    ds.metadata.loc[unset, "trace_sampling_rate_hz"] = ds.data_format["sampling_rate"]
    return ds


def _rate_kind(meta: pd.DataFrame) -> pd.Series:
    return meta["trace_sampling_rate_hz"].fillna(-1.0)


def _p_pick(meta: pd.DataFrame | dict) -> np.ndarray:
    return np.fmax(*(np.asarray(meta[c], dtype=float) for c in PICKS["P"]))


def _onset_s(x: np.ndarray, pick: float) -> float:
    """First time (s, 100 Hz) after pick - 1 s where the 0.05 s energy tops 10x the noise's."""
    p0 = int(np.floor(pick))
    x = _demeaned(x.astype(float), p0)
    energy = np.convolve((x**2).sum(axis=0), np.ones(5) / 5, mode="same")
    noise = energy[p0 - 500 : p0 - 50].mean()
    return (p0 - 100 + np.flatnonzero(energy[p0 - 100 :] > 10 * noise)[0]) / 100.0


def test_mixed_rates_and_their_shares_in_every_split(mixed):
    meta, _ = mixed
    kind = _rate_kind(meta)
    shares = kind.value_counts(normalize=True)
    for rate, share in {100.0: 0.5, 200.0: 0.3, 50.0: 0.15, -1.0: 0.05}.items():
        assert shares[rate] == pytest.approx(share, abs=0.03)
    for split, rows in kind.groupby(meta["split"]):
        assert set(rows) == {100.0, 200.0, 50.0, -1.0}, split
    assert set(meta["split"]) == {"train", "dev", "test"}


def test_mixed_traces_hold_their_rate_and_length(mixed):
    import seisbench.data as sbd

    meta, path = mixed
    raw = sbd.WaveformDataset(path, component_order="ZNE")  # no target rate: stored arrays
    rate = meta["trace_sampling_rate_hz"].fillna(100.0)
    duration = meta["trace_npts"] / rate
    assert set(duration) == {60.0, 90.0}
    assert (duration == 90.0).mean() == pytest.approx(0.15, abs=0.03)
    assert set(rate[duration == 90.0]) == {100.0, 200.0, 50.0}
    for i in range(len(meta)):
        assert raw.get_waveforms(i).shape == (3, meta.at[i, "trace_npts"])


def test_seisbench_leaves_an_empty_rate_cell_empty(mixed):
    """seisbench 0.12.6 takes data_format's rate only when the rate column is absent: a NaN cell
    stays NaN and that trace cannot be read at 100 Hz; the project's loader has to fill it."""
    import seisbench.data as sbd

    meta, path = mixed
    unset = np.flatnonzero(meta["trace_sampling_rate_hz"].isna())
    assert len(unset) >= 5
    ds = sbd.WaveformDataset(path, sampling_rate=100, component_order="ZNE")
    assert ds.data_format["sampling_rate"] == 100.0
    assert ds.metadata["trace_sampling_rate_hz"].iloc[unset].isna().all()
    with pytest.raises(ValueError, match="unknown sampling rate"):
        ds.get_sample(int(unset[0]))
    filled = _at_100_hz(path)
    for i in unset:
        waveform, _ = filled.get_sample(int(i))
        assert waveform.shape == (3, meta.at[i, "trace_npts"])


def test_picks_are_at_each_traces_own_rate(mixed):
    """Read at 100 Hz, the rescaled P pick of a 200 or 50 Hz trace is where its P energy starts.

    The detector trails a slowly rising far P by up to ~0.3 s at any rate (100 Hz too); a pick
    written at another rate than the trace's would be off by half its time, 2.5 s or more.
    """
    meta, path = mixed
    ds = _at_100_hz(path)
    strong = _quakes(meta) & (meta["trace_snr_db"] >= 25).to_numpy()
    for rate in (200.0, 50.0):
        rows = np.flatnonzero(strong & (meta["trace_sampling_rate_hz"] == rate).to_numpy())
        assert len(rows) >= 5, rate
        offsets = []
        for i in rows:
            waveform, sample_meta = ds.get_sample(int(i))
            pick = _p_pick(sample_meta)
            assert pick == pytest.approx(_p_pick(meta.iloc[i]) * 100.0 / rate)
            assert waveform.shape[-1] == round(meta.at[i, "trace_npts"] * 100.0 / rate)
            offsets.append(_onset_s(waveform, pick) - pick / 100.0)
        assert np.abs(offsets).max() <= 0.3, rate
        assert abs(np.median(offsets)) <= 0.1, rate


def test_mixed_pick_and_magnitude_columns_are_ethz_like(mixed):
    meta, _ = mixed
    assert not {"trace_P_arrival_sample", "trace_S_arrival_sample"} & set(meta.columns)
    quake = _quakes(meta)
    p_count = meta[PICKS["P"]].notna().sum(axis=1)
    s_count = meta[PICKS["S"]].notna().sum(axis=1)
    assert (p_count[quake] == 1).all() and (p_count[~quake] == 0).all()
    assert (s_count <= 1).all() and (s_count[~quake] == 0).all()
    for column in PICKS["P"]:
        assert meta.loc[quake, column].notna().mean() == pytest.approx(0.5, abs=0.05)
    for column in PICKS["S"]:
        assert meta.loc[quake, column].notna().mean() == pytest.approx(0.45, abs=0.05)
    assert (s_count[quake] == 0).mean() == pytest.approx(0.1, abs=0.03)
    unrated = quake & meta["source_magnitude"].isna().to_numpy()
    assert unrated.mean() / quake.mean() == pytest.approx(0.05, abs=0.03)
    assert meta.loc[unrated, "source_magnitude_type"].isna().all()
    rated_events = set(meta.loc[quake & ~unrated, "source_id"])
    assert not rated_events & set(meta.loc[unrated, "source_id"])  # whole events unrated
    assert meta["trace_snr_db"][quake].notna().all() and meta["trace_snr_db"][~quake].isna().all()


def test_mixed_picks_agree_with_times_and_distance_at_the_traces_rate(mixed):
    meta, _ = mixed
    q = meta[_quakes(meta)]
    rate = q["trace_sampling_rate_hz"].fillna(100.0)
    origin = pd.to_datetime(q["source_origin_time"])
    start = pd.to_datetime(q["trace_start_time"])
    travel_s = (origin - start).dt.total_seconds() + q["path_hyp_distance_km"] / syn.VP_KM_S
    assert np.abs(travel_s * rate - _p_pick(q)).max() < 0.01
    s_pick = np.fmax(*(q[c].to_numpy() for c in PICKS["S"]))
    picked = ~np.isnan(s_pick)
    expected = q["path_hyp_distance_km"] * (1 / syn.VS_KM_S - 1 / syn.VP_KM_S) * rate
    assert np.abs((s_pick - _p_pick(q) - expected)[picked]).max() <= 0.01 * rate.max()


def test_mixed_set_read_at_100_hz_keeps_the_magnitude_physics(mixed):
    meta, path = mixed
    ds = _at_100_hz(path)
    rows = np.flatnonzero(_quakes(meta) & meta["source_magnitude"].notna().to_numpy())
    amp = np.array([syn.wood_anderson_peak_mm(ds.get_sample(int(i))[0], 100.0) for i in rows])
    r = meta.loc[rows, "path_hyp_distance_km"].to_numpy()
    residual = np.log10(amp) + syn.hutton_boore_minus_log_a0(r) - meta.loc[rows, "source_magnitude"]
    assert abs(residual.mean()) < 0.15
    assert 0.15 <= residual.std() <= 0.35
    for rate, group in residual.groupby(_rate_kind(meta.loc[rows])):
        assert abs(group.mean()) < 0.2, rate


def test_long_traces_do_not_wrap_and_end_in_noise(mixed):
    meta, path = mixed
    assert syn._nfft(syn.TRACE_SAMPLES) == syn._NFFT
    assert syn._nfft(9000) - 9000 >= syn._NFFT - syn.TRACE_SAMPLES
    ds = _at_100_hz(path)
    long = _quakes(meta) & (meta["trace_npts"] / meta["trace_sampling_rate_hz"].fillna(100) == 90)
    rows = np.flatnonzero(long & (meta["trace_snr_db"] > 10).to_numpy())
    assert len(rows) >= 5
    for i in rows:
        x, sample_meta = ds.get_sample(int(i))
        p0 = int(np.floor(_p_pick(sample_meta)))
        x = _demeaned(x.astype(float), p0)
        noise = _window_power(x, p0 - 500, p0 - 50)
        assert x.shape == (3, 9000)
        assert _window_power(x, 0, 200) < 3.0 * noise  # nothing wrapped onto the start
        assert _window_power(x, 8500, 9000) < 3.0 * noise  # the coda has died into noise


def test_resampling_keeps_the_100_hz_waveform():
    from scipy import signal

    rng = np.random.default_rng(0)
    sos = signal.butter(6, 20.0, fs=100.0, output="sos")
    x = signal.sosfiltfilt(sos, rng.standard_normal((3, 6000)) * 1e4)
    up = syn._at_rate(x, 200.0)
    assert up.shape == (3, 12000) and np.array_equal(up, np.round(up))
    back = signal.decimate(up, 2, axis=-1, zero_phase=True)
    assert np.corrcoef(back[:, 100:-100].ravel(), x[:, 100:-100].ravel())[0, 1] > 0.999
    down = syn._at_rate(x, 50.0)
    assert down.shape == (3, 3000)
    below_15_hz = signal.butter(6, 15.0, fs=100.0, output="sos")  # well inside the 50 Hz band
    again = signal.sosfiltfilt(below_15_hz, signal.resample(down, 6000, axis=-1))
    smooth = signal.sosfiltfilt(below_15_hz, x)
    assert np.corrcoef(again[:, 100:-100].ravel(), smooth[:, 100:-100].ravel())[0, 1] > 0.999
    assert np.array_equal(syn._at_rate(x, 100.0), np.round(x).astype(np.float32))


def test_mixed_set_is_deterministic_and_differs_from_the_plain_set(tmp_path):
    a = syn.write_synthetic(tmp_path / "a", 40, seed=5, mixed=True)
    b = syn.write_synthetic(tmp_path / "b", 40, seed=5, mixed=True)
    plain = syn.write_synthetic(tmp_path / "plain", 40, seed=5)
    assert (a / "metadata.csv").read_bytes() == (b / "metadata.csv").read_bytes()
    arrays_a, arrays_b = _arrays(a), _arrays(b)
    assert arrays_a.keys() == arrays_b.keys()
    assert all(np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)
    assert (a / "metadata.csv").read_bytes() != (plain / "metadata.csv").read_bytes()


def test_ensure_synthetic_keeps_the_mixed_set_apart():
    import seisbench

    path = syn.ensure_synthetic(20, seed=3, mixed=True)
    assert path == Path(seisbench.cache_root) / "datasets" / "synthetic_mixed_20_s3"
    assert path == syn.synthetic_path(20, seed=3, mixed=True) != syn.synthetic_path(20, seed=3)
    assert "trace_Pg_arrival_sample" in pd.read_csv(path / "metadata.csv").columns
    assert syn.ensure_synthetic(20, seed=3, mixed=True) == path


def test_data_synth_mixed_rates_flag(tmp_path):
    from click.testing import CliRunner

    from seismic_ml.cli import cli

    out = tmp_path / "mixed"
    args = ["data", "synth", "--out", str(out), "--n-traces", "20", "--seed", "1"]
    result = CliRunner().invoke(cli, [*args, "--mixed-rates"])
    assert result.exit_code == 0, result.output
    assert "mixed sampling rates" in result.output
    meta = pd.read_csv(out / "metadata.csv")
    assert "trace_P1_arrival_sample" in meta.columns and "trace_P_arrival_sample" not in meta
    assert meta["trace_sampling_rate_hz"].nunique(dropna=False) > 1
