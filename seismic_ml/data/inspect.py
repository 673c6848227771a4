"""`seismic-ml data inspect`: a dataset's summary and a figure of example labelled windows."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seisbench.data as sbd  # noqa: E402

from seismic_ml.data.pipelines import phase_eval_generator  # noqa: E402
from seismic_ml.data.registry import SPLITS, get_split, load_dataset, pick_columns  # noqa: E402
from seismic_ml.errors import SeismicMLError  # noqa: E402

EXAMPLE_LABELS = "PSN"
N_EXAMPLES = 4


def inspect_dataset(name: str, out_dir: Path) -> tuple[str, Path]:
    """The printed summary and the path of the example-window PNG."""
    dataset = load_dataset(name)
    summary = summarize(dataset.metadata, name)
    figure = plot_examples(dataset, out_dir / f"examples_{_slug(name)}.png")
    return summary, figure


def summarize(meta: pd.DataFrame, name: str) -> str:
    """Traces per split, magnitude and distance ranges and pick-column coverage, as text."""
    lines = [f"dataset {name}: {len(meta)} traces"]
    if "split" in meta.columns:
        counts = meta["split"].value_counts()
        lines.append("split: " + ", ".join(f"{s} {int(counts.get(s, 0))}" for s in SPLITS))
    else:
        lines.append("split: no split column (a seeded 70/10/20 split is used)")
    lines.append(_range_line(meta, "source_magnitude", "magnitude", ""))
    distance = "path_hyp_distance_km" if "path_hyp_distance_km" in meta else "path_ep_distance_km"
    lines.append(_range_line(meta, distance, "distance", " km"))
    columns = pick_columns(meta)
    if not columns:
        lines.append("picks: no trace_<phase>_arrival_sample columns")
    for column, phase in columns.items():
        share = meta[column].notna().mean()
        lines.append(f"pick {column} -> {phase}: {share:.1%} of traces")
    return "\n".join(lines)


def _range_line(meta: pd.DataFrame, column: str, label: str, unit: str) -> str:
    if column not in meta.columns:
        return f"{label}: no {column} column"
    values = pd.to_numeric(meta[column], errors="coerce").dropna()
    if values.empty:
        return f"{label}: none given"
    return (
        f"{label}: {values.min():.2f} to {values.max():.2f}{unit} "
        f"(median {values.median():.2f}, {len(values)} traces)"
    )


def plot_examples(dataset: sbd.WaveformDataset, path: Path) -> Path:
    """Deterministic phase windows of the first split that has traces, with their labels."""
    if not pick_columns(dataset.metadata):
        raise SeismicMLError("no pick columns: nothing to draw labelled windows from")
    split = next(s for s in SPLITS if _has_split(dataset, s))
    subset = get_split(dataset, split, N_EXAMPLES)
    generator = phase_eval_generator(subset, EXAMPLE_LABELS, 3001, 30, seed=0)
    fig, axes = plt.subplots(len(generator), 1, figsize=(10, 2.2 * len(generator)), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        sample = generator[i]
        time = np.arange(sample["X"].shape[-1]) / 100.0
        for channel, component in zip(sample["X"], "ZNE"):
            ax.plot(time, channel / (np.abs(channel).max() + 1e-9), lw=0.5, label=component)
        for label, curve in zip(EXAMPLE_LABELS, sample["y"]):
            ax.plot(time, curve - 2.2, lw=1.2, label=f"label {label}")
        ax.set_ylabel(_trace_label(subset.metadata.iloc[i]), fontsize=7)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=6)
    axes[-1, 0].set_xlabel("time in window (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _trace_label(row: pd.Series) -> str:
    """The writer's original trace name when seisbench renamed it to a bucket address."""
    name = row.get("trace_name_original", row["trace_name"])
    return (
        f"{name}\nM {row['source_magnitude']:.1f}"
        if pd.notna(row.get("source_magnitude"))
        else name
    )


def _has_split(dataset: sbd.WaveformDataset, split: str) -> bool:
    try:
        get_split(dataset, split, 1)
    except SeismicMLError:
        return False
    return True


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in Path(name).name or name)
