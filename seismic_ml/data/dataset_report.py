"""`seismic-ml data inspect`: a dataset's summary, its problems and example labelled windows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seisbench.data as sbd  # noqa: E402

from seismic_ml.data.pipelines import phase_eval_generator  # noqa: E402
from seismic_ml.data.quality import (  # noqa: E402
    Problem,
    metadata_problems,
    missing_problems,
    missing_waveforms,
    rate_summary,
    usable_rate,
    waveform_flags,
    waveform_problems,
)
from seismic_ml.data.registry import (  # noqa: E402
    SPLITS,
    UnreadableMetadata,
    get_split,
    load_dataset,
    pick_columns,
)
from seismic_ml.errors import SeismicMLError  # noqa: E402

EXAMPLE_LABELS = "PSN"
N_EXAMPLES = 4


@dataclass
class Inspection:
    """What `data inspect` reports: summary, problems found, the figure or why there is none."""

    summary: str
    problems: list[Problem]
    figure: Path | None
    note: str = ""


def inspect_dataset(name: str, out_dir: Path) -> Inspection:
    """Summary, problem table and example-window PNG of a dataset; unreadable files raise."""
    try:
        dataset = load_dataset(name)
    except UnreadableMetadata as exc:
        meta = exc.metadata
        note = "waveforms not read: seisbench cannot load this metadata"
        return Inspection(summarize(meta, name), metadata_problems(meta), None, note)
    missing = missing_waveforms(dataset)  # checked against the file's blocks before any read
    readable = dataset.filter(usable_rate(dataset.metadata) & ~missing, inplace=False)
    nonfinite, zero = waveform_flags(readable)
    summary = summarize(dataset.metadata, name) + "\n" + _waveform_line(nonfinite, zero, missing)
    problems = [
        *metadata_problems(dataset.metadata),
        *missing_problems(dataset, missing),
        *waveform_problems(nonfinite, zero),
    ]
    usable = readable.filter(~(nonfinite | zero), inplace=False)
    figure, note = _figure(usable, out_dir / f"examples_{_slug(name)}.png")
    return Inspection(summary, problems, figure, note)


def _waveform_line(nonfinite: np.ndarray, zero: np.ndarray, missing: np.ndarray) -> str:
    """How many waveforms were read, how many of them are bad, how many rows name none."""
    unread = f", {int(missing.sum())} rows name no waveform (not read)" if missing.any() else ""
    return (
        f"waveforms: {len(zero)} read, {int(nonfinite.sum())} with NaN or Inf samples, "
        f"{int(zero.sum())} all zero{unread}"
    )


def _figure(dataset: sbd.WaveformDataset, path: Path) -> tuple[Path | None, str]:
    phases = set(pick_columns(dataset.metadata).values())
    if phases != {"P", "S"}:
        return None, "no figure: it needs both a P and an S pick column"
    if len(dataset) == 0:
        return None, "no figure: no trace is usable"
    return plot_examples(dataset, path), ""


def format_problems(problems: list[Problem]) -> str:
    """The problems as a table: column, number of traces, what it means; or a line saying none."""
    if not problems:
        return "problems: none found"
    rows = [("column", "traces", "what it means")]
    rows += [(p.column, str(p.count), p.meaning) for p in problems]
    width = [max(len(row[i]) for row in rows) for i in (0, 1)]
    lines = [f"problems: {len(problems)} found"]
    lines += [f"  {c:<{width[0]}}  {n:>{width[1]}}  {m}" for c, n, m in rows]
    return "\n".join(lines)


def summarize(meta: pd.DataFrame, name: str) -> str:
    """Traces per split, magnitude and distance ranges and pick-column coverage, as text."""
    lines = [f"dataset {name}: {len(meta)} traces"]
    if "split" in meta.columns:
        counts = meta["split"].value_counts()
        lines.append("split: " + ", ".join(f"{s} {int(counts.get(s, 0))}" for s in SPLITS))
    else:
        lines.append("split: no split column (a seeded 70/10/20 split is used)")
    lines.append(f"sampling rates: {rate_summary(meta)}")
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
    magnitude = pd.to_numeric(row.get("source_magnitude"), errors="coerce")
    return f"{name}\nM {magnitude:.1f}" if pd.notna(magnitude) else name


def _has_split(dataset: sbd.WaveformDataset, split: str) -> bool:
    try:
        get_split(dataset, split, 1)
    except SeismicMLError:
        return False
    return True


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in Path(name).name or name)
