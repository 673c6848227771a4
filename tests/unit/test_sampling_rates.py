"""Picks at the rate of the waveforms: traces at 50, 100 and 200 Hz (and one whose rate only the
HDF5 data_format gives), 60 and 90 s long, P and S spread over several columns, some traces
without S or magnitude. Everything the project cuts or scores must equal what seisbench's
get_sample (which resamples to 100 Hz and rescales `*_sample` keys) and its augmentations give.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import seisbench.data as sbd
import seisbench.generate as sbg

from seismic_ml.data import pipelines
from seismic_ml.data.batches import MagnitudeBatches, PhaseBatches
from seismic_ml.data.quality import rate_summary, screen
from seismic_ml.data.registry import (
    first_pick,
    get_split,
    load_directory,
    pick_columns,
    pick_samples,
    trace_samples,
)
from seismic_ml.data.waveforms import open_waveforms
from seismic_ml.evaluation.baselines import hypocentral_distance_km
from seismic_ml.evaluation.scoring_phase import first_onsets

GB = 2**30
RATES = [100.0, 200.0, 50.0, np.nan, 200.0, 100.0, 50.0, 200.0]  # nan: only data_format says
PICK_COLUMNS = ["trace_Pg_arrival_sample", "trace_P1_arrival_sample"]
S_COLUMNS = ["trace_Sg_arrival_sample", "trace_S1_arrival_sample"]


def _row(i: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
    """One trace: its own rate and length, picks in its own samples, ETHZ-style columns."""
    rate = RATES[i % len(RATES)]
    stored_rate = 100.0 if np.isnan(rate) else rate
    seconds = 90.0 if i % 5 == 0 else 60.0
    npts = int(seconds * stored_rate)
    p_s, s_s = rng.uniform(5.0, 30.0), 0.0
    s_s = p_s + rng.uniform(2.0, 20.0)
    record: dict = {
        "trace_name": f"tr{i:03d}",
        "trace_sampling_rate_hz": rate,
        "trace_npts": npts,
        "split": ("train", "dev", "test")[i % 3],
        "source_magnitude": np.nan if i % 7 == 3 else round(rng.uniform(0.5, 4.5), 2),
        "path_hyp_distance_km": np.nan,  # the S-P time gives the distance
        **dict.fromkeys(PICK_COLUMNS + S_COLUMNS, np.nan),
    }
    if i % 9 != 8:  # the rest are noise traces without picks
        record[PICK_COLUMNS[i % 2]] = p_s * stored_rate + 0.4
        if i % 4 == 0:  # several picks of one phase: the earlier counts as first
            record[PICK_COLUMNS[(i + 1) % 2]] = (p_s + 0.7) * stored_rate
        if i % 6 != 5:  # some events have no S pick
            record[S_COLUMNS[i % 2]] = s_s * stored_rate
    data = rng.normal(size=(3, npts)).astype(np.float32) * (1 + np.arange(npts) / npts)
    return record, data


def write_mixed_rates(folder: Path, n: int = 48) -> Path:
    """A dataset in seisbench's format with the awkward cases real ones have."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    with sbd.WaveformDataWriter(folder / "metadata.csv", folder / "waveforms.hdf5") as writer:
        writer.data_format = {
            "dimension_order": "CW",
            "component_order": "ZNE",
            "sampling_rate": 100,
            "measurement": "velocity",
            "unit": "counts",
        }
        for i in range(n):
            writer.add_trace(*_row(i, rng))
    return folder


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> sbd.WaveformDataset:
    return load_directory(write_mixed_rates(tmp_path_factory.mktemp("mixed") / "set"))


def adjusted_metadata(dataset: sbd.WaveformDataset, row: int) -> dict:
    """seisbench's metadata of one trace after its resampling to 100 Hz."""
    return dataset.get_sample(row)[1]


def test_the_fixture_has_the_awkward_cases(mixed) -> None:
    raw = pd.read_csv(Path(mixed.path) / "metadata.csv")
    assert set(raw["trace_sampling_rate_hz"].dropna()) == {50.0, 100.0, 200.0}
    assert raw["trace_sampling_rate_hz"].isna().any()
    assert (mixed.metadata["trace_sampling_rate_hz"] == 100.0).sum() > (
        raw["trace_sampling_rate_hz"] == 100.0
    ).sum()  # the data_format's rate filled the empty cells
    assert raw[PICK_COLUMNS].notna().all(axis=1).any()  # two P picks on one trace
    assert (raw[PICK_COLUMNS].notna().any(axis=1) & raw[S_COLUMNS].isna().all(axis=1)).any()
    assert raw["source_magnitude"].isna().any() and (raw["trace_npts"] >= 9000).any()


def test_every_pick_equals_seisbench_adjusted_metadata(mixed) -> None:
    ours = pick_samples(mixed.metadata)
    for row in range(len(mixed)):
        theirs = adjusted_metadata(mixed, row)
        for column in pick_columns(mixed.metadata):
            np.testing.assert_allclose(ours[column].iloc[row], theirs[column], rtol=1e-12)
        assert trace_samples(mixed.metadata, 0)[row] == mixed.get_sample(row)[0].shape[-1]


def test_a_200_hz_pick_is_rescaled_as_seisbench_does() -> None:
    meta = pd.DataFrame(
        {"trace_sampling_rate_hz": [200.0, 50.0], "trace_Pg_arrival_sample": [2650.4, 100.0]}
    )
    np.testing.assert_allclose(first_pick(meta, "P"), [1325.2, 200.0])


@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_phase_windows_and_labels_equal_seisbench_steered_generator(mixed, split) -> None:
    data = get_split(mixed, split)
    reference = pipelines.phase_eval_generator(data, "NPS", 3001, sigma=20, seed=3)
    source = open_waveforms(data, GB)
    ours = PhaseBatches(source, data, 3001, "NPS", 20, window_seed=3)
    batch = ours[list(range(len(data)))]
    # evaluation's windows: the same cut, without the labels
    plain = PhaseBatches(source, data, 3001, "NPS", 20, window_seed=3, labelled=False)
    unlabelled = plain[list(range(len(data)))]
    assert set(unlabelled) == {"X"}
    for row in range(len(data)):
        sample = reference[row]
        np.testing.assert_allclose(batch["X"][row].numpy(), sample["X"], atol=2e-4, rtol=1e-4)
        np.testing.assert_allclose(batch["y"][row].numpy(), sample["y"], atol=1e-5)
        np.testing.assert_allclose(unlabelled["X"][row].numpy(), sample["X"], atol=2e-4, rtol=1e-4)


def test_training_windows_equal_get_sample_cut_at_the_same_start(mixed) -> None:
    """Random training windows: the waveform is get_sample's at 100 Hz, zero outside the pick's
    context; the labels are seisbench's ProbabilisticLabeller on get_sample's metadata."""
    data = get_split(mixed, "train")
    batches = PhaseBatches(open_waveforms(data, GB), data, 3001, "NPS", 20, "std", seed=1)
    rows = np.arange(len(data))
    lo, hi, start = batches._random_windows(rows)
    y = batches[rows.tolist()]["y"].numpy()
    x_raw = batches.source.windows(rows, lo, hi, start, 3001)
    streamed = open_waveforms(data, 0)  # no budget: every trace read from HDF5 on demand
    np.testing.assert_array_equal(streamed.windows(rows, lo, hi, start, 3001), x_raw)
    labeller = sbg.ProbabilisticLabeller(
        label_columns=pick_columns(data.metadata), model_labels="NPS", sigma=20, dim=0
    )
    for i in rows:
        waveform, metadata = data.get_sample(int(i))
        expected = np.zeros((3, 3001), dtype=np.float32)
        a, b = max(lo[i], start[i], 0), min(hi[i], start[i] + 3001, waveform.shape[-1])
        expected[:, a - start[i] : b - start[i]] = waveform[:, a:b]
        np.testing.assert_allclose(x_raw[i], expected, rtol=1e-6)
        picks = [metadata[c] for c in pick_columns(data.metadata) if np.isfinite(metadata[c])]
        if picks:
            assert any(lo[i] == max(int(p) - 3000, 0) for p in picks)  # around a 100 Hz pick
        shifted = {c: metadata[c] - start[i] for c in pick_columns(data.metadata)}
        state = {"X": (np.zeros((3, 3001)), shifted)}
        labeller(state)
        np.testing.assert_allclose(y[i], state["y"][0], atol=1e-5)


def test_magnitude_windows_equal_seisbench_and_start_before_the_100_hz_p(mixed) -> None:
    data = pipelines.magnitude_subset(get_split(mixed, "train"))
    reference = pipelines.magnitude_eval_generator(data, 3001, seed=5)
    steered = MagnitudeBatches(open_waveforms(data, GB), data, 3001, window_seed=5)
    batch = steered[list(range(len(data)))]
    for row in range(len(data)):
        np.testing.assert_array_equal(batch["X"][row].numpy(), reference[row]["X"])
    random = MagnitudeBatches(open_waveforms(data, GB), data, 3001, seed=2)
    rows = np.arange(len(data))
    offsets = random.rng(rows).integers(100, 1001, size=len(rows))
    p_100hz = np.array(
        [
            min(v for k, v in adjusted_metadata(data, r).items() if k in PICK_COLUMNS and v == v)
            for r in rows
        ]
    )
    np.testing.assert_allclose(random.p, p_100hz)
    x = random[rows.tolist()]["X"].numpy()
    for r in rows:
        waveform = data.get_sample(int(r))[0]
        start = int(p_100hz[r]) - offsets[r]
        expected = np.zeros((3, 3001))
        a, b = max(start, 0), min(start + 3001, waveform.shape[-1])
        expected[:, a - start : b - start] = waveform[:, a:b]
        np.testing.assert_allclose(x[r], expected, rtol=1e-6, atol=1e-6)


def test_evaluation_truth_is_seisbench_adjusted_onsets(mixed) -> None:
    data = get_split(mixed, "test")
    windows = PhaseBatches(open_waveforms(data, GB), data, 3001, "NPS", 30, window_seed=0)
    rows = list(range(len(data)))
    onsets = first_onsets(windows, rows)
    for row in rows:
        meta = adjusted_metadata(data, row)
        for k, phase in enumerate("PS"):
            columns = PICK_COLUMNS if phase == "P" else S_COLUMNS
            inside = [
                meta[c] - windows.fixed_starts[row]
                for c in columns
                if np.isfinite(meta[c]) and 0 <= meta[c] - windows.fixed_starts[row] < 3001
            ]
            expected = min(inside) if inside else np.nan
            np.testing.assert_allclose(onsets[row, k], expected, rtol=1e-12)


def test_s_minus_p_distance_uses_seconds_whatever_the_rate(mixed) -> None:
    meta = mixed.metadata
    distance = hypocentral_distance_km(meta)
    for row in np.flatnonzero(np.isfinite(distance))[:10]:
        adjusted = adjusted_metadata(mixed, int(row))
        p = min(adjusted[c] for c in PICK_COLUMNS if np.isfinite(adjusted[c]))
        s = min(adjusted[c] for c in S_COLUMNS if np.isfinite(adjusted[c]))
        assert distance[row] == pytest.approx((s - p) / 100.0 * 6.0 * 3.5 / 2.5)


def test_each_split_says_which_traces_are_resampled(mixed, capsys, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        screen(get_split(mixed, "train"), "train")
    (line,) = [x for x in capsys.readouterr().err.splitlines() if "resampled" in x]
    assert line.startswith("train split: 16 traces: ")
    assert "resampled from 200 Hz" in line and "resampled from 50 Hz" in line
    counts = get_split(mixed, "train").metadata["trace_sampling_rate_hz"].value_counts()
    assert rate_summary(get_split(mixed, "train").metadata) == (
        f"16 traces: {counts[100.0]} at 100 Hz, {counts[50.0]} resampled from 50 Hz, "
        f"{counts[200.0]} resampled from 200 Hz"
    )


def test_inspect_names_the_rates_and_draws_windows_at_100_hz(mixed, tmp_path) -> None:
    from seismic_ml.data.dataset_report import inspect_dataset

    found = inspect_dataset(str(mixed.path), tmp_path)
    line = next(x for x in found.summary.splitlines() if x.startswith("sampling rates: "))
    counts = mixed.metadata["trace_sampling_rate_hz"].value_counts()
    assert line == (
        f"sampling rates: 48 traces: {counts[100.0]} at 100 Hz, {counts[50.0]} resampled from "
        f"50 Hz, {counts[200.0]} resampled from 200 Hz"
    )
    assert found.figure is not None and found.figure.is_file()
