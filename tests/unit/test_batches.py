"""Batched windows against seisbench's generators, and preloaded against streamed waveforms."""

import dataclasses

import numpy as np
import pytest
import seisbench.generate as sbg
import torch

from seismic_ml.config import DataConfig, with_model_defaults
from seismic_ml.data import pipelines
from seismic_ml.data.batches import MagnitudeBatches, PhaseBatches, pick_table
from seismic_ml.data.budget import parse_budget
from seismic_ml.data.registry import get_split, load_dataset, pick_columns
from seismic_ml.data.waveforms import (
    PreloadedWaveforms,
    StreamedWaveforms,
    open_waveforms,
    trace_lengths,
)
from seismic_ml.errors import BadOptionValue
from seismic_ml.models.registry import build_model
from seismic_ml.training.loop import resolve_precision
from seismic_ml.training.tasks import make_loaders, make_task
from tests.conftest import tiny_run_config

GB = 2**30


@pytest.fixture(scope="module")
def dev(tiny_dataset: str):
    return get_split(load_dataset(tiny_dataset), "dev")


@pytest.fixture(scope="module")
def train(tiny_dataset: str):
    return get_split(load_dataset(tiny_dataset), "train")


def all_rows(dataset) -> list[int]:
    return list(range(len(dataset)))


def stacked(generator) -> tuple[np.ndarray, np.ndarray]:
    samples = [generator[i] for i in range(len(generator))]
    return np.stack([s["X"] for s in samples]), np.stack([s["y"] for s in samples])


@pytest.mark.parametrize("labels, norm", [("NPS", "std"), ("PSN", "peak")])
def test_phase_validation_batches_equal_seisbench_steered_windows(dev, labels, norm) -> None:
    reference = pipelines.phase_eval_generator(dev, labels, 3001, sigma=30, seed=3, norm=norm)
    source = open_waveforms(dev, GB)
    batches = PhaseBatches(source, dev, 3001, labels, 30, norm, window_seed=3)
    ours = batches[all_rows(dev)]
    x, y = stacked(reference)
    np.testing.assert_allclose(ours["X"].numpy(), x, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(ours["y"].numpy(), y, atol=1e-5)
    # evaluation's windows: the same, without the labels it never reads
    plain = PhaseBatches(source, dev, 3001, labels, 30, norm, window_seed=3, labelled=False)
    unlabelled = plain[all_rows(dev)]
    assert set(unlabelled) == {"X"}
    np.testing.assert_array_equal(unlabelled["X"].numpy(), ours["X"].numpy())


def test_magnitude_validation_batches_equal_seisbench_steered_windows(dev) -> None:
    subset = pipelines.magnitude_subset(dev)
    reference = pipelines.magnitude_eval_generator(subset, 3001, seed=5)
    batches = MagnitudeBatches(open_waveforms(subset, GB), subset, 3001, window_seed=5)
    ours = batches[all_rows(subset)]
    x, y = stacked(reference)
    np.testing.assert_array_equal(ours["X"].numpy(), x)
    np.testing.assert_allclose(ours["y"].numpy(), y)


def test_phase_training_windows_follow_seisbench_recipe_and_labeller(train) -> None:
    """Each random window lies in the 6000-sample context of one of its picks, and its labels
    are what seisbench's ProbabilisticLabeller makes of that window."""
    batches = PhaseBatches(open_waveforms(train, GB), train, 3001, "NPS", 30, seed=1)
    rows = np.arange(min(len(train), 48))
    lo, hi, start = batches._random_windows(rows)
    picks, _ = pick_table(train.metadata)
    y = batches[rows.tolist()]["y"].numpy()
    labeller = sbg.ProbabilisticLabeller(
        label_columns=pick_columns(train.metadata), model_labels="NPS", sigma=30, dim=0
    )
    for i, row in enumerate(rows):
        found = picks[row][np.isfinite(picks[row])]
        if found.size:
            assert any(lo[i] == max(int(p) - 3000, 0) for p in found)
            assert lo[i] - 3001 < start[i] <= hi[i] and hi[i] - lo[i] <= 6000
        metadata = {c: train.metadata[c].iloc[row] - start[i] for c in pick_columns(train.metadata)}
        state = {"X": (np.zeros((3, 3001)), metadata)}
        labeller(state)
        np.testing.assert_allclose(y[i], state["y"][0], atol=1e-5)


def test_magnitude_training_windows_place_p_in_the_offset_range(train) -> None:
    subset = pipelines.magnitude_subset(train)
    batches = MagnitudeBatches(open_waveforms(subset, GB), subset, 3001, seed=2)
    p = subset.metadata["trace_P_arrival_sample"].to_numpy()
    seen = []
    for epoch in range(3):
        batches.set_epoch(epoch)
        rows = all_rows(subset)
        x = batches[rows]["X"].numpy()
        assert x.shape == (len(rows), 3, 3001)
        offsets = _offsets(batches, rows)
        seen.append([int(p[r]) - offset for r, offset in zip(rows, offsets, strict=True)])
    assert seen[0] != seen[1] != seen[2]
    offsets = p[:, None] - np.array(seen).T
    assert offsets.min() >= 100 and offsets.max() <= 1000


def _offsets(batches: MagnitudeBatches, rows: list[int]) -> np.ndarray:
    return batches.rng(np.asarray(rows)).integers(100, 1001, size=len(rows))


def test_same_seed_epoch_and_rows_give_the_same_batch(train) -> None:
    batches = PhaseBatches(open_waveforms(train, GB), train, 3001, "NPS", 30, seed=4)
    rows = [3, 1, 4, 1, 5]
    a, b = batches[rows], batches[rows]
    assert torch.equal(a["X"], b["X"]) and torch.equal(a["y"], b["y"])
    batches.set_epoch(1)
    assert not torch.equal(a["X"], batches[rows]["X"])


def test_streamed_waveforms_give_the_preloaded_windows_in_bounded_memory(train) -> None:
    lengths = trace_lengths(train, 6000)
    preloaded = PreloadedWaveforms.read(train, lengths, 3)
    one_trace = 3 * int(lengths.max()) * 4
    streamed = StreamedWaveforms(train, lengths, 3, budget=5 * one_trace)
    rng = np.random.default_rng(0)
    for _ in range(4):
        rows = rng.integers(0, len(train), size=16)
        start = rng.integers(-500, 6000, size=16)
        lo, hi = rng.integers(-10, 2000, size=16), rng.integers(3000, 7000, size=16)
        np.testing.assert_array_equal(
            preloaded.windows(rows, lo, hi, start, 3001),
            streamed.windows(rows, lo, hi, start, 3001),
        )
        assert streamed.cached_bytes <= 5 * one_trace and len(streamed.cache) <= 5


def test_memory_budget_decides_preloading_and_both_paths_train_alike(tiny_dataset: str) -> None:
    def first_batches(budget: str):
        cfg = with_model_defaults(tiny_run_config("phasenet"))
        cfg = dataclasses.replace(cfg, data=DataConfig(tiny_dataset, memory_budget=budget))
        model = build_model(cfg.model_type, cfg.model)
        train_set, val_set = make_task(cfg).datasets(load_dataset(tiny_dataset), model)
        loader, _ = make_loaders(train_set, val_set, 8, 0, seed=0)
        return type(train_set.source), next(iter(loader))

    kind_a, a = first_batches("1GB")
    kind_b, b = first_batches("0")
    assert (kind_a, kind_b) == (PreloadedWaveforms, StreamedWaveforms)
    assert torch.equal(a["X"], b["X"]) and torch.equal(a["y"], b["y"])


@pytest.mark.parametrize(
    "text, available, expected",
    [("50%", 8 * GB, 4 * GB), ("2GB", 0, 2 * GB), ("512MB", 0, 512 * 2**20), ("0", 0, 0)],
)
def test_memory_budget_reads_sizes(text: str, available: int, expected: int) -> None:
    assert parse_budget(text, available) == expected


@pytest.mark.parametrize("text", ["lots", "150%", "-1GB", "2TB"])
def test_bad_memory_budget_is_a_usage_error(text: str) -> None:
    with pytest.raises(BadOptionValue, match="--memory-budget"):
        DataConfig(memory_budget=text).validate()


def test_precision_auto_follows_the_cpu_and_bf16_is_explicit() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with open("/proc/cpuinfo") as info:
        native = bool({"avx512_bf16", "amx_bf16"} & set(info.read().split()))
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
