"""6. Memory: waveforms streamed from HDF5 within a budget against preloaded, on a set larger
than the budget; each path in a fresh process reporting windows/s and its peak RSS.

Worker (one path, one JSON line on stdout):
python benchmarks/memory_paths.py --dataset synthetic:30000 --budget 1GB --steps 30 --batch 64
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common import Figure, Section, Sizes, compare, median, run_config, say, timed

MB = 2**20


def rss_mb() -> float:
    """Resident memory of this process now, MB."""
    import psutil

    return psutil.Process().memory_info().rss / MB


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB: VmHWM of its own address space.

    Not ru_maxrss: a process spawned by a large parent inherits the parent's peak there.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def data_pass(loader: Any) -> float:
    """Windows/s of one whole pass over the training loader (no model): every trace is read."""
    windows, start = 0, time.perf_counter()
    for batch in loader:
        windows += len(batch["X"])
    return windows / (time.perf_counter() - start)


def train_rate(trainer: Any) -> float:
    """Windows/s of the loop's training steps: one warm-up epoch, then one timed epoch."""
    trainer.train_epoch([])
    seconds, _ = timed(lambda: trainer.train_epoch([]))
    return trainer.windows_seen / seconds


def worker(dataset: str, budget: str, steps: int, batch: int) -> dict[str, Any]:
    """One path: open the split within the budget, read it all once, then train a few steps."""
    from seismic_ml.data.budget import parse_budget
    from seismic_ml.training.tasks import seed_everything
    from seismic_ml.training.train import build_trainer

    size = Sizes(dataset=dataset, batch=batch, epochs=1, max_steps=steps)
    cfg = run_config("phasenet", size, memory_budget=budget)
    seed_everything(cfg.train.seed)
    base = rss_mb()
    open_s, trainer = timed(lambda: build_trainer(cfg))
    source = trainer.train_loader.dataset.source
    result = {"path": type(source).__name__, "open_s": open_s, "base_rss_mb": base}
    result["data_rate"] = data_pass(trainer.train_loader)  # fills a streamed cache to its bound
    result["data_peak_mb"] = peak_rss_mb() - base  # what opening and reading the data added
    result["train_rate"] = train_rate(trainer)  # activations on top of the filled cache
    result["cache_mb"] = getattr(source, "cached_bytes", getattr(source, "nbytes", 0)) / MB
    result["train_windows"] = len(trainer.train_loader.dataset)
    result["budget_mb"] = parse_budget(budget) / MB
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_worker(size: Sizes, budget: str) -> dict[str, Any]:
    """The worker in a fresh process; its JSON result."""
    dataset = f"synthetic:{size.mem_traces}"
    args = ["--dataset", dataset, "--budget", budget, "--steps", str(size.mem_steps)]
    command = [sys.executable, __file__, *args, "--batch", str(size.batch)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory worker failed ({budget}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_set(n_traces: int) -> Figure:
    """Build the large synthetic set once (reused from the seisbench cache when present)."""
    from seismic_ml.data.synthetic import ensure_synthetic, synthetic_path

    cached = (synthetic_path(n_traces) / "waveforms.hdf5").is_file()
    say(f"memory: synthetic:{n_traces} {'cached' if cached else 'building'}")
    seconds, path = timed(lambda: ensure_synthetic(n_traces))
    size_gb = sum(f.stat().st_size for f in path.iterdir()) / 2**30
    note = f"{size_gb:.2f} GB on disk" + (", already cached: not rebuilt" if cached else "")
    value = float("nan") if cached else seconds
    return Figure(f"build synthetic:{n_traces}", value, "s", [value], target="(info)", note=note)


def run(size: Sizes, repeats: int) -> Section:
    """Both paths in fresh processes, back to back in each repeat."""
    built = build_set(size.mem_traces)
    streamed, preloaded = [], []
    for i in range(repeats):
        say(f"memory: repeat {i + 1}/{repeats} (streamed, then preloaded)")
        streamed.append(run_worker(size, size.mem_budget))
        preloaded.append(run_worker(size, size.mem_preload_budget))
    return Section(
        "memory",
        "6. Memory: streamed from HDF5 within a budget against preloaded",
        [built, *path_figures(size, streamed, preloaded)],
        notes(size, streamed, preloaded),
    )


def path_figures(size: Sizes, streamed: list[dict], preloaded: list[dict]) -> list[Figure]:
    """Windows/s of both paths side by side, and the streamed peak RSS against twice the budget."""
    col = {key: [r[key] for r in streamed] for key in streamed[0] if key != "path"}
    pre = {key: [r[key] for r in preloaded] for key in preloaded[0] if key != "path"}
    ref = f"preloaded (budget {size.mem_preload_budget})"
    unit, name = "windows/s", f"streamed (budget {size.mem_budget})"
    limit = 2 * median(col["budget_mb"])
    rss = compare(f"{name} data memory", col["data_peak_mb"], pre["data_peak_mb"], "MB", ref)
    rss.target, rss.met = f"<= 2 x budget = {limit:.0f} MB", rss.value <= limit
    rss.note = (
        f"peak RSS after the data pass minus the process's {median(col['base_rss_mb']):.0f} MB "
        "with torch, mlflow and seisbench imported"
    )
    whole = compare(f"{name} peak RSS", col["peak_rss_mb"], pre["peak_rss_mb"], "MB", ref)
    whole.target, whole.note = (
        "(info)",
        "the whole process at the end, training activations included",
    )
    return [
        compare(
            f"{name} training", col["train_rate"], pre["train_rate"], unit, ref, target="(info)"
        ),
        compare(
            f"{name} data pass", col["data_rate"], pre["data_rate"], unit, ref, target="(info)"
        ),
        rss,
        whole,
    ]


def notes(size: Sizes, streamed: list[dict], preloaded: list[dict]) -> list[str]:
    """How the memory figures were measured, and what each process reported."""
    s, p = streamed[0], preloaded[0]
    return [
        f"synthetic:{size.mem_traces}, phasenet, batch {size.batch}: each path a fresh process "
        "running build_trainer(cfg) with --memory-budget, then one pass over the whole training "
        f"loader without a model (data pass; it fills a streamed cache to its bound), then "
        f"{size.mem_steps} training steps of the loop's train_epoch after as many warm-up steps "
        "(training). Data memory: VmHWM after the data pass minus RSS before opening the data.",
        f"streamed: source {s['path']}, {s['train_windows']} training traces, cache "
        f"{s['cache_mb']:.0f} MB of a {s['budget_mb']:.0f} MB budget at the end, opened in "
        f"{s['open_s']:.1f} s.",
        f"preloaded: source {p['path']}, {p['cache_mb']:.0f} MB preloaded, opened in "
        f"{p['open_s']:.1f} s.",
    ]


def main() -> None:
    """Worker entry point: print one path's result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--budget", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(worker(args.dataset, args.budget, args.steps, args.batch)))


if __name__ == "__main__":
    main()
