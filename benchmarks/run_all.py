"""Run the benchmark suite (issue #13) and write benchmarks/results/bench.json and bench.md.

Usage: python benchmarks/run_all.py [--repeats 3] [--quick] [--only training,data,...]
       [--suite-seconds S] [--scale-dataset synthetic:N]
Comparisons: training, data, tracking, evaluation, fixed, memory, quality, scale (in that
order). Set SEISBENCH_CACHE_ROOT: the synthetic sets are built there on first use and reused.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import common
from common import Section, Sizes, quiet_package, say

RESULTS = Path(__file__).resolve().parent / "results"
COMPARISONS = ("training", "data", "tracking", "evaluation", "fixed", "memory", "quality", "scale")


def comparison(name: str) -> Callable[[Sizes, int, argparse.Namespace], Section]:
    """The function that runs one comparison (imported late: common.QUIET_ENV must come first, as
    tqdm reads its environment when it is imported)."""
    import data_path
    import eval_speed
    import fixed_costs
    import memory_paths
    import quality_gate
    import scale
    import tracking_overhead
    import training_speed

    table = {
        "training": lambda s, r, a: training_speed.run(s, r),
        "data": lambda s, r, a: data_path.run(s, r),
        "tracking": lambda s, r, a: tracking_overhead.run(s, r),
        "evaluation": lambda s, r, a: eval_speed.run(s, r),
        "fixed": lambda s, r, a: fixed_costs.run(s, r, a.suite_seconds),
        "memory": lambda s, r, a: memory_paths.run(s, r),
        "quality": lambda s, r, a: quality_gate.run(s, a.quality_dataset, a.quality_epochs),
        "scale": lambda s, r, a: scale.run(s, r),
    }
    return table[name]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="median over this many repeats")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke run")
    parser.add_argument("--only", default="", help=f"comma-separated of {', '.join(COMPARISONS)}")
    parser.add_argument("--suite-seconds", type=float, help="whole test suite's time, to show")
    parser.add_argument("--dataset", help="training/evaluation data (default synthetic:1200)")
    parser.add_argument("--epochs", type=int, help="epochs of each tracked run (default 3)")
    parser.add_argument("--max-steps", type=int, help="steps per epoch (default: whole split)")
    parser.add_argument("--mem-traces", type=int, help="traces of the memory test's set")
    parser.add_argument("--mem-budget", help="memory budget of the streamed path (default 1GB)")
    parser.add_argument(
        "--quality-dataset",
        default="synthetic-mixed:2000",
        help="the quality gate's mixed-rate set (default synthetic-mixed:2000)",
    )
    parser.add_argument(
        "--quality-epochs", type=int, help="quality gate epochs (default: the documented ones)"
    )
    parser.add_argument(
        "--scale-dataset", help="the scale section's set (default synthetic:50000, built once)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args(argv)
    args.only = [n.strip() for n in args.only.split(",") if n.strip()] or list(COMPARISONS)
    unknown = set(args.only) - set(COMPARISONS)
    if unknown:
        parser.error(f"unknown comparison(s) {', '.join(sorted(unknown))}")
    if args.quick:
        args.repeats = 1
        args.quality_epochs = args.quality_epochs or 1
        if args.quality_dataset == "synthetic-mixed:2000":
            args.quality_dataset = "synthetic-mixed:200"
    return args


def run_one(name: str, size: Sizes, args: argparse.Namespace) -> Section:
    """One comparison; a failure becomes a section that says so, and the rest still run."""
    started = time.perf_counter()
    try:
        section = comparison(name)(size, args.repeats, args)
    except Exception as exc:  # a benchmark that breaks must not lose the others' figures
        traceback.print_exc()
        section = Section(name, f"{name}: FAILED", notes=[f"{type(exc).__name__}: {exc}"])
    section.notes.append(f"({time.perf_counter() - started:.0f} s for this section)")
    return section


def main(argv: list[str] | None = None) -> int:
    """Run the chosen comparisons against one local tracking server; write the results."""
    args = parse_args(argv)
    if "SEISBENCH_CACHE_ROOT" not in os.environ:
        say("SEISBENCH_CACHE_ROOT is not set: synthetic sets go to seisbench's default cache")
    quiet_package()
    size = common.sizes(
        args.quick,
        dataset=args.dataset,
        epochs=args.epochs,
        max_steps=args.max_steps,
        mem_traces=args.mem_traces,
        mem_budget=args.mem_budget,
        scale_dataset=args.scale_dataset,
    )
    import environment
    import report

    header, started = environment.header(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seismic_ml_bench_") as tmp:
        with common.tracking_server(Path(tmp)):
            sections = [run_one(name, size, args) for name in args.only]
    header["load_average_end"] = round(os.getloadavg()[0], 2)
    header["wall_s"] = time.perf_counter() - started
    settings = {"repeats": args.repeats, "quick": args.quick, "only": args.only, **asdict(size)}
    for path in report.write(args.out, header, settings, sections):
        say(f"wrote {path}")
    print((args.out / "bench.md").read_text())
    return 1 if any(s.title.endswith("FAILED") for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())
