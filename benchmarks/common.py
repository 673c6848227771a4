"""What every comparison shares: sizes, figures with targets, timing, the tracking server."""

from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.processes
from tests.processes import free_port, stop_group, wait_answering  # noqa: E402

EXPERIMENT = "seismic-ml-bench"
MLFLOW = str(Path(sys.executable).with_name("mlflow"))
QUIET_ENV = {  # no run URLs, artifact or conversion progress bars between the bench's lines
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "TQDM_DISABLE": "1",
}


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is; --quick shrinks every one of them."""

    dataset: str = "synthetic:1200"
    batch: int = 64
    epochs: int = 3  # of each tracked run; the first (warm-up) is left out of windows/s
    max_steps: int = 0  # optimizer steps per epoch, 0: the whole training split
    seed: int = 42
    tracking_steps: int = 2000
    sync_steps: int = 100
    synthetic_traces: int = 2000
    help_runs: int = 5
    mem_traces: int = 30000
    mem_budget: str = "1GB"
    mem_preload_budget: str = "4GB"
    mem_steps: int = 30
    scale_dataset: str = "synthetic:50000"  # the scale section's set (#21), built once
    scale_steps: int = 2  # optimizer steps of each scale start and tuning trial
    scale_rate_steps: int = 20  # steps of the second starts, whose windows/s are projected
    scale_trials: int = 5


QUICK = Sizes(
    dataset="synthetic:200",
    epochs=2,
    max_steps=2,
    tracking_steps=200,
    sync_steps=10,
    synthetic_traces=200,
    help_runs=2,
    mem_traces=3000,
    mem_budget="100MB",
    mem_preload_budget="1GB",
    mem_steps=3,
    scale_dataset="synthetic:2000",
    scale_steps=1,
    scale_rate_steps=3,
    scale_trials=2,
)


def sizes(quick: bool, **overrides: Any) -> Sizes:
    """The default or quick sizes with the given fields replaced (None: keep)."""
    base = QUICK if quick else Sizes()
    return replace(base, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Figure:
    """One row of a table: a median over repeats, its reference, their ratio and the target."""

    name: str
    value: float
    unit: str
    samples: list[float]
    reference: str = ""
    reference_value: float | None = None
    ratio: float | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return asdict(self)


@dataclass
class Section:
    """One comparison: its figures and the notes that say how they were measured."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields."""
        return {**asdict(self), "figures": [f.to_dict() for f in self.figures]}


def median(values: list[float]) -> float:
    """Median of the samples (NaN when there are none)."""
    return statistics.median(values) if values else float("nan")


def compare(
    name: str,
    values: list[float],
    refs: list[float],
    unit: str,
    reference: str,
    at_least: float | None = None,
    target: str = "",
) -> Figure:
    """A figure against a reference measured back to back: median of the per-repeat ratios."""
    ratios = [v / r for v, r in zip(values, refs) if r]
    ratio = median(ratios) if ratios else None
    met = None if at_least is None or ratio is None else ratio >= at_least
    if at_least is not None and not target:
        target = f">= {at_least:g}x"
    return Figure(name, median(values), unit, values, reference, median(refs), ratio, target, met)


def ratio_at_most(
    name: str, values: list[float], refs: list[float], unit: str, reference: str, limit: float
) -> Figure:
    """A cost against a reference measured in the same run: met when the ratio is <= limit."""
    figure = compare(name, values, refs, unit, reference, target=f"<= {limit:g}x")
    figure.met = None if figure.ratio is None else figure.ratio <= limit
    return figure


def at_most(name: str, values: list[float], unit: str, limit: float, target: str) -> Figure:
    """A cost figure with an absolute ceiling."""
    value = median(values)
    return Figure(name, value, unit, values, target=target, met=value <= limit)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of fn() and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def quiet_package() -> None:
    """Keep the package's progress lines and MLflow's chatter out of the bench's output."""
    from seismic_ml import progress

    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    import mlflow  # noqa: F401  (it sets its logger's level on import: import it first)

    progress.set_quiet(True)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("mlflow").setLevel(logging.ERROR)


def say(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def start_server(root: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A local `mlflow server` (SQLite backend, served artifacts), waited for on /health."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "w")  # noqa: SIM115  (the server writes it while it runs)
    proc = subprocess.Popen(
        [MLFLOW, "server", "--backend-store-uri", f"sqlite:///{root}/backend.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_answering(url, proc, root / "server.log", timeout=180)
    except BaseException:
        stop_group(proc, grace_s=30)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server and its workers (its own process group)."""
    stop_group(proc, grace_s=30)


@contextmanager
def tracking_server(root: Path) -> Iterator[str]:
    """A real local tracking server for the block: this process and its children use it."""
    import mlflow

    proc, url = start_server(root)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = url
    os.environ.setdefault("SEISMIC_ML_HOME", str(root / "seismic_ml_home"))
    mlflow.set_tracking_uri(url)
    try:
        yield url
    finally:
        stop_server(proc)
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def run_config(model_type: str, size: Sizes, precision: str = "fp32", **data: Any) -> Any:
    """The RunConfig every training comparison uses: default model size, CPU, no warmup."""
    from seismic_ml.config import DataConfig, RunConfig, TrainConfig, checked
    from seismic_ml.models.registry import MODELS

    train = TrainConfig(
        epochs=size.epochs,
        batch_size=size.batch,
        warmup_epochs=0,
        seed=size.seed,
        device="cpu",
        precision=precision,
        max_steps_per_epoch=size.max_steps,
    )
    config = MODELS[model_type].config_cls()
    return checked(RunConfig(model_type, config, DataConfig(dataset=size.dataset, **data), train))
