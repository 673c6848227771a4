"""Evaluation figures: magnitude scatter and residuals, pick residuals, probability curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

if TYPE_CHECKING:
    import obspy

MODEL_STYLE = {"s": 10, "alpha": 0.6, "color": "tab:blue", "label": "model"}
BASELINE_STYLE = {"s": 10, "alpha": 0.5, "color": "tab:grey", "label": "ML baseline"}
PHASE_COLORS = {"P": "tab:red", "S": "tab:blue", "N": "tab:grey"}
STATIONS_PER_PAGE = 8  # predict's figure: stations per page
MAX_PAGES = 10  # ... and pages at most; stations beyond are left out, and counted


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_magnitude(predictions: pd.DataFrame, path: Path) -> Path:
    """True vs predicted, residual histogram, residual vs magnitude and vs distance (2x2)."""
    p = predictions
    has_baseline = "baseline_ml" in p and p["baseline_ml"].notna().any()
    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    ax = axes[0, 0]
    if has_baseline:
        ax.scatter(p["true_magnitude"], p["baseline_ml"], **BASELINE_STYLE)
    ax.scatter(p["true_magnitude"], p["pred_magnitude"], **MODEL_STYLE)
    lims = [p["true_magnitude"].min() - 0.5, p["true_magnitude"].max() + 0.5]
    ax.plot(lims, lims, "k--", lw=1)
    ax.set(xlabel="catalogue magnitude", ylabel="predicted magnitude", title="true vs predicted")
    ax.legend()
    _residual_histogram(axes[0, 1], p, has_baseline)
    _residual_scatter(axes[1, 0], p, "true_magnitude", "catalogue magnitude", has_baseline)
    _residual_scatter(axes[1, 1], p, "distance_km", "hypocentral distance (km)", has_baseline)
    return _save(fig, path)


def _residual_histogram(ax: plt.Axes, p: pd.DataFrame, has_baseline: bool) -> None:
    residual = p["residual"].dropna()
    bins = np.linspace(min(-1.5, residual.min()), max(1.5, residual.max()), 41)
    if has_baseline:
        ax.hist(
            p["baseline_residual"].dropna(),
            bins=bins,
            color="tab:grey",
            alpha=0.5,
            label="ML baseline",
        )
    ax.hist(residual, bins=bins, color="tab:blue", alpha=0.7, label="model")
    ax.axvline(0, color="k", lw=1)
    ax.set(xlabel="predicted - true", ylabel="traces", title="residuals")
    ax.legend()


def _residual_scatter(
    ax: plt.Axes, p: pd.DataFrame, column: str, label: str, has_baseline: bool
) -> None:
    if column not in p or p[column].notna().sum() == 0:
        ax.text(0.5, 0.5, f"no {label}", ha="center", va="center", transform=ax.transAxes)
        return
    if has_baseline:
        ax.scatter(p[column], p["baseline_residual"], **BASELINE_STYLE)
    ax.scatter(p[column], p["residual"], **MODEL_STYLE)
    ax.axhline(0, color="k", lw=1)
    ax.set(xlabel=label, ylabel="predicted - true", title=f"residual vs {label.split(' (')[0]}")


def plot_pick_residuals(residuals: dict[str, np.ndarray], path: Path, limit_s: float = 1.0) -> Path:
    """One histogram per labelled residual set (e.g. model P, model S, STA/LTA P), in seconds."""
    fig, axes = plt.subplots(1, len(residuals), figsize=(5 * len(residuals), 4), squeeze=False)
    bins = np.linspace(-limit_s, limit_s, 41)
    for ax, (label, values) in zip(axes[0], residuals.items()):
        values = np.asarray(values, dtype=float)
        outside = int((np.abs(values) > limit_s).sum())
        ax.hist(np.clip(values, -limit_s, limit_s), bins=bins, color="tab:blue", alpha=0.8)
        ax.axvline(0, color="k", lw=1)
        ax.set(
            xlabel="predicted - labelled onset (s)",
            ylabel="windows",
            title=f"{label}: {len(values)} picks, {outside} beyond ±{limit_s:g} s",
        )
    return _save(fig, path)


@dataclass
class ExampleWindow:
    """One evaluation window to draw: waveform, predicted curves, labelled onsets."""

    name: str
    waveform: np.ndarray
    probabilities: np.ndarray
    labels: str
    onsets: dict[str, float]


def plot_examples(examples: Sequence[ExampleWindow], sampling_rate: float, path: Path) -> Path:
    """Waveforms with the predicted P and S probability curves and the labelled onsets."""
    fig, axes = plt.subplots(len(examples), 1, figsize=(11, 2.6 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        t = np.arange(ex.waveform.shape[-1]) / sampling_rate
        for row, comp in zip(ex.waveform, "ZNE"):
            scale = np.abs(row).max() or 1.0
            ax.plot(t, row / scale * 0.45 + 0.5, lw=0.5, alpha=0.6, label=comp)
        twin = ax.twinx()
        for channel, phase in enumerate(ex.labels):
            if phase in "PS":
                twin.plot(t, ex.probabilities[channel], color=PHASE_COLORS[phase], label=phase)
        for phase, sample in ex.onsets.items():
            if np.isfinite(sample):
                ax.axvline(sample / sampling_rate, color=PHASE_COLORS[phase], ls="--", lw=1)
        twin.set(ylim=(0, 1.05), ylabel="probability")
        ax.set(yticks=[], title=ex.name, xlabel="time in window (s)")
        twin.legend(loc="upper right")
    return _save(fig, path)


def _legend_both(ax: plt.Axes, twin: plt.Axes) -> None:
    """One legend for a trace axis and its twin (duplicate labels shown once)."""
    handles, labels = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    unique = dict(zip([*labels, *more[1]], [*handles, *more[0]]))
    ax.legend(unique.values(), unique.keys(), loc="upper right", fontsize=7)


@dataclass(frozen=True)
class FigurePages:
    """predict's figure: its page files, how many stations they show and how many they leave out."""

    paths: tuple[Path, ...]
    stations: int
    left_out: int

    def describe(self) -> str:
        """The pages in one line, saying any stations left out."""
        shown = self.stations - self.left_out
        files = ", ".join(str(p) for p in self.paths)
        what = f"{shown} stations" + (
            f", {STATIONS_PER_PAGE} per page" if len(self.paths) > 1 else ""
        )
        if self.left_out:
            what += f"; {self.left_out} more not drawn (at most {MAX_PAGES} pages)"
        return f"{files} ({what})"


def page_path(path: Path, page: int) -> Path:
    """The file of a page: path itself for the first, NAME-2.png, NAME-3.png, ... after."""
    return path if page == 0 else path.with_name(f"{path.stem}-{page + 1}{path.suffix}")


def stream_stations(stream: obspy.Stream) -> list[tuple[str, str, str]]:
    """(network, station, location) of every station in the stream, sorted."""
    return sorted({(tr.stats.network, tr.stats.station, tr.stats.location) for tr in stream})


def plot_stream_picks(
    stream: obspy.Stream, annotations: obspy.Stream, picks: pd.DataFrame, path: Path
) -> FigurePages:
    """predict's figure: each station's vertical trace, probability curves and picks, on pages of
    STATIONS_PER_PAGE stations (path, then NAME-2.png, ...), at most MAX_PAGES of them."""
    stations = stream_stations(stream)
    pages = [
        stations[i : i + STATIONS_PER_PAGE] for i in range(0, len(stations), STATIONS_PER_PAGE)
    ]
    drawn = pages[:MAX_PAGES]
    left_out = len(stations) - sum(map(len, drawn))
    paths = []
    for number, page in enumerate(drawn):
        first = number * STATIONS_PER_PAGE + 1
        title = f"stations {first}-{first + len(page) - 1} of {len(stations)}"
        if left_out:
            title += f" ({left_out} not drawn)"
        paths.append(_plot_page(stream, annotations, picks, page, title, page_path(path, number)))
    return FigurePages(tuple(paths), len(stations), left_out)


def _plot_page(
    stream: obspy.Stream,
    annotations: obspy.Stream,
    picks: pd.DataFrame,
    stations: list[tuple[str, str, str]],
    title: str,
    path: Path,
) -> Path:
    """One page of predict's figure."""
    fig, axes = plt.subplots(
        len(stations), 1, figsize=(11, 2.6 * len(stations) + 0.4), squeeze=False
    )
    for ax, station in zip(axes[:, 0], stations):
        _plot_station(ax, stream, annotations, picks, station)
    fig.suptitle(title)
    return _save(fig, path)


def _plot_station(
    ax: plt.Axes,
    stream: obspy.Stream,
    annotations: obspy.Stream,
    picks: pd.DataFrame,
    station: tuple[str, str, str],
) -> None:
    """A station's vertical trace, its probability curves and its picks on one axis."""
    net, sta, loc = station
    traces = stream.select(network=net, station=sta, location=loc)
    z = (traces.select(component="Z") or traces)[0]
    t0 = z.stats.starttime
    ax.plot(z.times(), z.data / (np.abs(z.data).max() or 1.0), color="k", lw=0.5, label=z.id)
    twin = ax.twinx()
    for tr in annotations.select(network=net, station=sta, location=loc):
        phase = tr.stats.channel.split("_")[-1]
        if phase in "PS":
            twin.plot(
                tr.times() + (tr.stats.starttime - t0),
                tr.data,
                color=PHASE_COLORS[phase],
                label=f"{phase} probability",
            )
    mine = (picks["network"] == net) & (picks["station"] == sta) & (picks["location"] == loc)
    for _, pick in picks[mine].iterrows():
        ax.axvline(
            pd.Timestamp(pick["time"]).timestamp() - t0.timestamp,
            color=PHASE_COLORS.get(pick["phase"], "k"),
            ls="--",
            label=f"{pick['phase']} pick",
        )
    twin.set(ylim=(0, 1.05), ylabel="probability")
    _legend_both(ax, twin)
    label = f"{net}.{sta}" + (f".{loc}" if loc else "")
    ax.set(title=label, xlabel=f"seconds after {t0}", yticks=[])
