"""Phase scoring: model and STA/LTA picks on fixed windows, per-window table, figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seisbench.data as sbd
import torch
from torch import nn
from torch.utils.data import Dataset

from seismic_ml.config import RunConfig
from seismic_ml.data import pipelines
from seismic_ml.data.registry import SAMPLING_RATE, pick_columns
from seismic_ml.evaluation import baselines, metrics, plots
from seismic_ml.evaluation.inference import (
    WINDOW_SEED,
    Scored,
    batches,
    forward,
    identity_columns,
    ready,
)

N_EXAMPLES = 4


class OnsetSamples:
    """Puts the window's first P and S onset samples (NaN: none inside) in 'onsets'."""

    def __init__(self, columns: dict[str, str], windowlen: int) -> None:
        """columns: pick column -> phase; windowlen: samples per window."""
        self.columns = columns
        self.windowlen = windowlen

    def __call__(self, state_dict: dict) -> None:
        """Add the window's onsets to a seisbench generator state."""
        _, meta = state_dict["X"]
        onsets = [self._first(meta, phase) for phase in "PS"]
        state_dict["onsets"] = (np.array(onsets, dtype=np.float64), None)

    def _first(self, meta: dict, phase: str) -> float:
        """The earliest onset of a phase inside the window, NaN when there is none."""
        samples = [_as_float(meta.get(c)) for c, p in self.columns.items() if p == phase]
        inside = [s for s in samples if 0 <= s < self.windowlen]
        return min(inside, default=float("nan"))


def _as_float(value: Any) -> float:
    """A metadata value as a float; missing or unreadable values are NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def phase_generator(model: nn.Module, data: sbd.WaveformDataset, cfg: RunConfig) -> Dataset:
    """The deterministic phase windows (as in validation) plus each window's labelled onsets."""
    generator = pipelines.phase_eval_generator(
        data,
        model.labels,
        model.in_samples,
        cfg.data.label_sigma,
        WINDOW_SEED,
        getattr(model, "norm", "std"),
    )
    generator.add_augmentations([OnsetSamples(pick_columns(data.metadata), model.in_samples)])
    return generator


def score_phase(
    model: nn.Module,
    data: sbd.WaveformDataset,
    cfg: RunConfig,
    batch_size: int,
    threshold: float,
    plot_dir: Path | None,
) -> Scored:
    """Model and STA/LTA pick metrics on every window; per-window table; optional figures."""
    model = ready(model)
    generator = phase_generator(model, data, cfg)
    frames = [_phase_batch(model, batch) for batch in batches(generator, batch_size)]
    table = pd.concat(frames, ignore_index=True)
    table.insert(0, "window_start_sample", generator.metadata["start_sample"].to_numpy())
    table = pd.concat([identity_columns(data.metadata), table], axis=1)
    phases = "".join(p for p in "PS" if p in model.labels)
    found = metrics.phase_metrics(table, SAMPLING_RATE, threshold, phases)
    result = {f"test/{k}": v for k, v in found.items()}
    result.update({f"baseline/{k}": v for k, v in _sta_lta_metrics(table).items()})
    scored = Scored(result, table)
    if plot_dir is not None:
        scored.figures = _phase_figures(model, generator, table, phases, plot_dir)
    return scored


def _phase_batch(model: nn.Module, batch: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Per window: labelled onsets, predicted onsets and peak probabilities, STA/LTA pick."""
    probs = forward(model, batch["X"]).numpy()
    onsets = batch["onsets"].numpy()
    labels = model.labels
    columns: dict[str, np.ndarray] = {}
    for i, phase in enumerate("PS"):
        key = phase.lower()
        columns[f"true_{key}_sample"] = onsets[:, i]
        if phase in labels:
            curve = probs[:, labels.index(phase)]
            columns[f"pred_{key}_sample"] = curve.argmax(axis=-1).astype(float)
            columns[f"pred_{key}_prob"] = curve.max(axis=-1)
    columns["is_event"] = np.isfinite(onsets).any(axis=1)
    columns["detection_score"] = (1.0 - probs[:, labels.index("N")]).max(axis=-1)
    base_pick, base_score = baselines.sta_lta_picks(batch["X"].numpy(), SAMPLING_RATE)
    columns["baseline_p_sample"] = base_pick
    columns["baseline_score"] = base_score
    return pd.DataFrame(columns)


def _sta_lta_metrics(table: pd.DataFrame) -> dict[str, float]:
    """The STA/LTA picker scored like the model: a trigger is a pick, the peak ratio a score."""
    picked = table["baseline_p_sample"].notna()
    baseline = pd.DataFrame(
        {
            "true_p_sample": table["true_p_sample"],
            "pred_p_sample": table["baseline_p_sample"],
            "pred_p_prob": picked.astype(float),
            "is_event": table["is_event"],
            "detection_score": table["baseline_score"],
        }
    )
    return metrics.phase_metrics(baseline, SAMPLING_RATE, threshold=0.5, phases="P")


def _phase_figures(
    model: nn.Module, generator: Dataset, table: pd.DataFrame, phases: str, plot_dir: Path
) -> list[Path]:
    """Residual histograms (model and STA/LTA) and a few example windows with their curves."""
    residuals = {
        f"model {p}": metrics.onset_residuals(
            table[f"true_{p.lower()}_sample"], table[f"pred_{p.lower()}_sample"], SAMPLING_RATE
        )
        for p in phases
    }
    residuals["STA/LTA P"] = metrics.onset_residuals(
        table["true_p_sample"], table["baseline_p_sample"], SAMPLING_RATE
    )
    examples = [_example(model, generator, table, i) for i in _example_indices(table)]
    return [
        plots.plot_pick_residuals(residuals, plot_dir / "pick_residuals.png"),
        plots.plot_examples(examples, SAMPLING_RATE, plot_dir / "example_windows.png"),
    ]


def _example_indices(table: pd.DataFrame) -> list[int]:
    """The first few event windows and the first noise window."""
    events = np.flatnonzero(table["is_event"].to_numpy())[: N_EXAMPLES - 1]
    noise = np.flatnonzero(~table["is_event"].to_numpy())[:1]
    return sorted([*events.tolist(), *noise.tolist()])


def _example(
    model: nn.Module, generator: Dataset, table: pd.DataFrame, index: int
) -> plots.ExampleWindow:
    """One window, its probability curves and labelled onsets, for the examples figure."""
    sample = generator[index]
    x = torch.from_numpy(sample["X"][None])
    probs = forward(model, x).numpy()[0]
    onsets = dict(zip("PS", sample["onsets"]))
    return plots.ExampleWindow(
        table["trace_name"].iloc[index], sample["X"], probs, model.labels, onsets
    )
