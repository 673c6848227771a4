"""Classical baselines: STA/LTA picks, distances, local magnitude, and ML on the synthetic set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from seismic_ml.data.pipelines import magnitude_eval_generator, magnitude_subset
from seismic_ml.data.registry import get_split, load_dataset
from seismic_ml.evaluation import baselines


def test_s_minus_p_distance_uses_vp_vs():
    # 10 s * 6 * 3.5 / 2.5 = 84 km
    assert baselines.s_minus_p_distance_km(10.0) == pytest.approx(84.0)
    assert baselines.s_minus_p_distance_km(10.0, vp=8.0, vs=4.0) == pytest.approx(80.0)


def test_hypocentral_distance_falls_back_to_epicentre_and_depth_then_s_minus_p():
    meta = pd.DataFrame(
        {
            "path_hyp_distance_km": [50.0, np.nan, np.nan, np.nan],
            "path_ep_distance_km": [1.0, 3.0, np.nan, np.nan],
            "source_depth_km": [1.0, 4.0, np.nan, np.nan],
            "trace_Pg_arrival_sample": [100.0, 100.0, 1000.0, np.nan],
            "trace_Sg_arrival_sample": [900.0, 900.0, 2000.0, np.nan],
            "trace_sampling_rate_hz": [100.0, 100.0, 100.0, 100.0],
        }
    )
    distance = baselines.hypocentral_distance_km(meta)
    assert distance[:3].tolist() == pytest.approx([50.0, 5.0, 84.0])
    assert np.isnan(distance[3])


def test_local_magnitude_is_anchored_at_one_millimetre_at_100_km():
    # Richter's and Hutton & Boore's anchor: 1 mm Wood-Anderson at 100 km is ML 3
    assert baselines.local_magnitude(1.0, 100.0) == pytest.approx(3.0)
    assert baselines.local_magnitude(10.0, 100.0) == pytest.approx(4.0)
    assert np.isnan(baselines.local_magnitude(0.0, 100.0))


def test_ml_baseline_grows_by_one_per_tenfold_amplitude_and_needs_a_distance():
    rng = np.random.default_rng(0)
    window = rng.normal(0.0, 1000.0, (1, 3, 3001))
    ml = baselines.ml_baseline(np.concatenate([window, 10 * window]), [50.0, 50.0], 100.0)
    assert ml[1] - ml[0] == pytest.approx(1.0)
    assert np.isnan(baselines.ml_baseline(window, [np.nan], 100.0)[0])


def _onset_window(onset: int, rng: np.random.Generator) -> np.ndarray:
    window = rng.normal(0.0, 1.0, (3, 3001))
    t = np.arange(3001 - onset) / 100.0
    window[0, onset:] += 30.0 * np.sin(2 * np.pi * 5.0 * t) * np.exp(-t / 3.0)
    return window


def test_sta_lta_picks_an_impulsive_onset_and_stays_quiet_on_noise():
    rng = np.random.default_rng(1)
    windows = np.stack([_onset_window(1000, rng), rng.normal(0.0, 1.0, (3, 3001))])
    picks, scores = baselines.sta_lta_picks(windows, 100.0)
    assert 1000 <= picks[0] <= 1050  # triggers within half a second after the onset
    assert np.isnan(picks[1])
    assert scores[0] > baselines.StaLtaSettings().trigger_on > scores[1]


def test_ml_baseline_on_synthetic_test_split_has_realistic_scatter():
    """The classical method lands near the design's sigma of 0.2 to 0.3 on the synthetic set."""
    subset = magnitude_subset(get_split(load_dataset("synthetic:200"), "test"))
    generator = magnitude_eval_generator(subset, 3001, seed=0)
    windows = np.stack([generator[i]["X"] for i in range(len(generator))])
    distance = baselines.hypocentral_distance_km(subset.metadata)
    ml = baselines.ml_baseline(windows, distance, 100.0)
    residual = ml - subset.metadata["source_magnitude"].to_numpy()
    assert len(residual) >= 30
    assert np.isfinite(residual).all()
    assert residual.std() < 0.4
    assert abs(residual.mean()) < 0.15


def test_batched_wood_anderson_equals_obspy_simulate_seismometer_per_trace():
    from obspy.signal.invsim import simulate_seismometer

    from seismic_ml.data import synthetic as syn

    rng = np.random.default_rng(3)
    windows = rng.normal(size=(5, 3, 3001)) * 1e4 + np.linspace(0, 80, 3001)
    expected = [
        max(
            np.abs(
                simulate_seismometer(
                    row / syn.GAIN_COUNTS_PER_M_S,
                    100.0,
                    paz_remove=None,
                    paz_simulate=syn.WOOD_ANDERSON_PAZ_VELOCITY,
                )
            ).max()
            * 1000.0
            for row in window[1:3]
        )
        for window in windows
    ]
    np.testing.assert_allclose(syn.wood_anderson_peaks_mm(windows, 100.0), expected, rtol=1e-9)


def test_batched_sta_lta_equals_obspy_per_window():
    from obspy.signal.filter import bandpass
    from obspy.signal.trigger import recursive_sta_lta, trigger_onset

    rng = np.random.default_rng(1)
    windows = rng.normal(size=(6, 3, 3001))
    windows[:3, :, 1500:] += 8 * rng.normal(size=(3, 3, 1501))
    picks, scores = baselines.sta_lta_picks(windows, 100.0)
    for window, pick, score in zip(windows, picks, scores, strict=True):
        z = bandpass(window[0] - window[0].mean(), 1.0, 20.0, 100.0, corners=2)
        cft = recursive_sta_lta(z, 30, 200)
        onsets = trigger_onset(cft, 3.0, 1.0)
        assert score == pytest.approx(cft.max(), rel=1e-12)
        assert (pick == onsets[0][0]) if len(onsets) else np.isnan(pick)
    assert np.isfinite(picks[:3]).all()
