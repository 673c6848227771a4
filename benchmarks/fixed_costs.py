"""5. Fixed costs a user waits for: CLI start-up, a synthetic set, model logging, the test suite."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import EXPERIMENT, Figure, Section, Sizes, at_most, median, say
from synthetic_throughput import time_build

GNU_TIME = "/usr/bin/time"
SUITE_FILE = Path(__file__).resolve().parent / "results" / "suite_seconds.txt"


def help_startup() -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of `python -m seismic_ml --help` in a fresh process.

    GNU time measures the RSS: a child this (large) process spawns itself inherits its peak in
    ru_maxrss (vfork + exec keep the high-water mark), so wait4 here would overstate it.
    """
    command = [sys.executable, "-m", "seismic_ml", "--help"]
    if not Path(GNU_TIME).is_file():
        return timed_run(command), float("nan")
    done = subprocess.run(
        [GNU_TIME, "-f", "%e %M", *command], capture_output=True, text=True, check=True
    )
    wall, max_kb = done.stderr.strip().splitlines()[-1].split()
    return float(wall), float(max_kb) / 1024


def timed_run(command: list[str]) -> float:
    """Wall seconds of a command that must succeed."""
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def synthetic_seconds(n_traces: int) -> float:
    """Wall seconds to write a synthetic set of n traces into a fresh temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as tmp:
        return time_build(Path(tmp) / "set", n_traces)[0]


def log_model_seconds() -> float:
    """Seconds to log a default-size amag_v2 as a pyfunc model into the tracking server."""
    import mlflow

    from seismic_ml.config import RunConfig
    from seismic_ml.models.registry import MODELS, build_model
    from seismic_ml.tracking.model_io import log_model

    cfg = RunConfig("amag_v2", MODELS["amag_v2"].config_cls())
    model = build_model("amag_v2", cfg.model)
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run():
        start = time.perf_counter()
        log_model(model, cfg)
        return time.perf_counter() - start


def suite_figure(suite_seconds: float | None) -> Figure:
    """The whole test suite's time, given on the command line or in results/suite_seconds.txt."""
    if suite_seconds is None and SUITE_FILE.is_file():
        suite_seconds = float(SUITE_FILE.read_text().split()[0])
    if suite_seconds is None:
        note = "not measured: pass --suite-seconds or write results/suite_seconds.txt"
        return Figure("whole test suite", float("nan"), "s", [], target="< 900 s", note=note)
    figure = at_most("whole test suite", [suite_seconds], "s", 900.0, "< 900 s")
    figure.note = "given, not run by the bench"
    return figure


def run(size: Sizes, repeats: int, suite_seconds: float | None = None) -> Section:
    """Each fixed cost, median over its runs."""
    say(f"fixed costs: --help x{size.help_runs}")
    starts = [help_startup() for _ in range(size.help_runs)]
    synthetic, logging = [], []
    for i in range(repeats):
        say(f"fixed costs: synthetic set and log_model, repeat {i + 1}/{repeats}")
        synthetic.append(synthetic_seconds(size.synthetic_traces))
        logging.append(log_model_seconds())
    help_figure = at_most(
        "`python -m seismic_ml --help`", [s[0] for s in starts], "s", 1.0, "< 1 s"
    )
    help_figure.note = f"peak RSS {median([s[1] for s in starts]):.0f} MB"
    return Section(
        "fixed",
        "5. Fixed costs a user waits for",
        [
            help_figure,
            at_most(
                f"synthetic set, {size.synthetic_traces} traces", synthetic, "s", 30.0, "< 30 s"
            ),
            at_most("log_model amag_v2 (default size)", logging, "s", 5.0, "< 5 s"),
            suite_figure(suite_seconds),
        ],
        [
            f"--help: wall time and peak RSS (GNU time) of a fresh process, median of "
            f"{size.help_runs}.",
            "synthetic set: write_synthetic into a fresh temporary folder (seisbench already "
            "imported), as benchmarks/synthetic_throughput.py.",
            "log_model: mlflow.pyfunc model from code (safetensors weights, explicit pip "
            "requirements, input example) into the local server; the first repeat is the "
            "process's first model log.",
            "Targets for the synthetic set (30 s), log_model (5 s) and the suite (15 min) are "
            "those recorded in benchmarks/RESULTS*.md.",
        ],
    )
