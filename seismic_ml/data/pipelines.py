"""What the tasks select from a dataset (magnitude rows, pick columns, evaluation window
starts), and seisbench's own generator recipes for phase and magnitude windows: training runs
on the batched windows of data/batches.py; these recipes are the reference that tests and
benchmarks hold them to, and what `data inspect` draws."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import seisbench.data as sbd
import seisbench.generate as sbg

from seismic_ml.data.quality import drop_bad_rates
from seismic_ml.data.registry import first_pick, non_numeric, pick_columns, trace_samples
from seismic_ml.errors import SeismicMLError

log = logging.getLogger(__name__)
PHASE_CONTEXT = 6000
P_OFFSET_RANGE = (100, 1000)
EVAL_PHASE_OFFSET_RANGE = (250, 2000)


class MagnitudeLabel:
    """Puts the trace's magnitude (a metadata column) into state_dict['y'] as a float32 scalar."""

    def __init__(self, key: str = "source_magnitude") -> None:
        self.key = key

    def __call__(self, state_dict: dict) -> None:
        _, metadata = state_dict["X"]
        state_dict["y"] = (np.float32(metadata[self.key]), None)

    def __str__(self) -> str:
        return f"MagnitudeLabel(key={self.key})"


def magnitude_subset(
    dataset: sbd.WaveformDataset, magnitude_type: str = "", split: str = ""
) -> sbd.WaveformDataset:
    """Traces usable for magnitude: a finite magnitude, a P pick, the wanted magnitude type."""
    dataset = drop_bad_rates(dataset, split)  # an unknown rate leaves no P pick to test for
    meta = dataset.metadata
    if "source_magnitude" not in meta.columns:
        raise SeismicMLError("the dataset has no source_magnitude column: no magnitude targets")
    if "P" not in pick_columns(meta).values():
        raise SeismicMLError(
            "the dataset has no P pick column (trace_P_arrival_sample or another "
            "trace_<P phase>_arrival_sample): magnitude windows start before P"
        )
    magnitude = pd.to_numeric(meta["source_magnitude"], errors="coerce")
    mask = np.isfinite(magnitude.to_numpy()) & first_pick(meta, "P").notna().to_numpy()
    if magnitude_type:
        if "source_magnitude_type" not in meta.columns:
            raise SeismicMLError("--magnitude-type given but the dataset has no magnitude types")
        types = meta["source_magnitude_type"].astype(str).str.upper()
        mask &= (types == magnitude_type.upper()).to_numpy()
    not_numbers = _non_numeric_magnitudes(meta["source_magnitude"])
    where = f"the {split} split" if split else "this split"
    if not mask.any():
        wanted = f" of type {magnitude_type}" if magnitude_type else ""
        also = f" ({not_numbers})" if not_numbers else ""
        raise SeismicMLError(f"no traces with a magnitude{wanted} and a P pick in {where}{also}")
    if not_numbers:
        log.warning("%s: %s and are left out", where, not_numbers)
    return dataset.filter(mask, inplace=False)


def _non_numeric_magnitudes(values: pd.Series) -> str:
    """'12 traces have a non-numeric source_magnitude (e.g. 'abc')', or '' when there are none."""
    bad = values[non_numeric(values)]
    if bad.empty:
        return ""
    return f"{len(bad)} traces have a non-numeric source_magnitude (e.g. {bad.iloc[0]!r})"


def phase_train_generator(
    dataset: sbd.WaveformDataset, labels: str, windowlen: int, sigma: int, norm: str = "std"
) -> sbg.GenericGenerator:
    """Random windows around picks (seisbench's PhaseNet recipe) with probabilistic labels."""
    columns = require_pick_columns(dataset)
    generator = sbg.GenericGenerator(dataset)
    generator.add_augmentations(
        [
            sbg.WindowAroundSample(
                list(columns),
                samples_before=PHASE_CONTEXT // 2,
                windowlen=PHASE_CONTEXT,
                selection="random",
                strategy="variable",
            ),
            sbg.RandomWindow(windowlen=windowlen, strategy="pad"),
            *_phase_tail(columns, labels, sigma, norm),
        ]
    )
    return generator


def phase_eval_generator(
    dataset: sbd.WaveformDataset,
    labels: str,
    windowlen: int,
    sigma: int,
    seed: int,
    norm: str = "std",
) -> sbg.SteeredGenerator:
    """One deterministic window per trace, P placed at a seeded offset, labels as in training."""
    columns = require_pick_columns(dataset)
    windows = eval_windows(dataset.metadata, windowlen, seed, EVAL_PHASE_OFFSET_RANGE)
    generator = sbg.SteeredGenerator(dataset, windows)
    generator.add_augmentations(
        [
            sbg.SteeredWindow(windowlen=windowlen, strategy="pad"),
            *_phase_tail(columns, labels, sigma, norm),
        ]
    )
    return generator


def _phase_tail(columns: dict[str, str], labels: str, sigma: int, norm: str) -> list:
    return [
        sbg.Normalize(demean_axis=-1, amp_norm_axis=-1, amp_norm_type=norm),
        sbg.ChangeDtype(np.float32),
        sbg.ProbabilisticLabeller(label_columns=columns, model_labels=labels, sigma=sigma, dim=0),
    ]


def magnitude_train_generator(dataset: sbd.WaveformDataset, windowlen: int) -> sbg.GenericGenerator:
    """One window per trace with P at a random offset; raw counts; target source_magnitude."""
    p_columns = [col for col, phase in pick_columns(dataset.metadata).items() if phase == "P"]
    low, high = P_OFFSET_RANGE
    generator = sbg.GenericGenerator(dataset)
    generator.add_augmentations(
        [
            sbg.WindowAroundSample(
                p_columns,
                samples_before=high,
                windowlen=windowlen + high - low,
                selection="first",
                strategy="pad",
            ),
            sbg.RandomWindow(windowlen=windowlen, strategy="pad"),
            sbg.ChangeDtype(np.float32),
            MagnitudeLabel(),
        ]
    )
    return generator


def magnitude_eval_generator(
    dataset: sbd.WaveformDataset, windowlen: int, seed: int
) -> sbg.SteeredGenerator:
    """One deterministic window per trace, P at a seeded offset, for evaluation."""
    windows = eval_windows(dataset.metadata, windowlen, seed, P_OFFSET_RANGE)
    generator = sbg.SteeredGenerator(dataset, windows)
    generator.add_augmentations(
        [
            sbg.SteeredWindow(windowlen=windowlen, strategy="pad"),
            sbg.ChangeDtype(np.float32),
            MagnitudeLabel(),
        ]
    )
    return generator


def eval_windows(
    metadata: pd.DataFrame, windowlen: int, seed: int, offset_range: tuple[int, int]
) -> pd.DataFrame:
    """The control table of deterministic windows: P at a seeded offset, noise traces at random."""
    rng = np.random.default_rng(seed)
    p = first_pick(metadata, "P").to_numpy(dtype=float)
    n_samples = trace_samples(metadata, PHASE_CONTEXT)
    offsets = rng.integers(offset_range[0], offset_range[1], size=len(metadata))
    noise_starts = (rng.random(len(metadata)) * np.maximum(n_samples - windowlen, 1)).astype(int)
    start = np.where(np.isfinite(p), p - offsets, noise_starts)
    start = np.clip(np.nan_to_num(start), 0, None).astype(int)
    return pd.DataFrame(
        {
            "trace_name": metadata["trace_name"].to_numpy(),
            "start_sample": start,
            "end_sample": start + windowlen,
        }
    )


def require_pick_columns(dataset: sbd.WaveformDataset) -> dict[str, str]:
    columns = pick_columns(dataset.metadata)
    if not columns:
        raise SeismicMLError(
            "the dataset has no pick columns (trace_<phase>_arrival_sample): nothing to label"
        )
    for phase in "PS":
        if phase not in columns.values():
            raise SeismicMLError(
                f"the dataset has no {phase} pick column (trace_{phase}_arrival_sample or another "
                f"trace_<{phase} phase>_arrival_sample): phase labels need both P and S picks"
            )
    return columns
