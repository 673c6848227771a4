"""Time write_synthetic(2000) into a temporary folder and print traces per second.

Usage: python benchmarks/synthetic_throughput.py [--n-traces 2000] [--repeats 3]
(`benchmarks/run_all.py --only fixed` times the same build as one of its fixed costs.)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def time_build(folder: Path, n_traces: int, seed: int = 0) -> tuple[float, float]:
    """Wall and process CPU seconds of write_synthetic(n_traces) into folder."""
    from seismic_ml.data.synthetic import write_synthetic

    start, cpu_start = time.perf_counter(), time.process_time()
    write_synthetic(folder, n_traces, seed=seed)
    return time.perf_counter() - start, time.process_time() - cpu_start


def main() -> None:
    """Run the benchmark and print one summary line per measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-traces", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synthetic_bench_") as tmp:
        os.environ.setdefault("SEISBENCH_CACHE_ROOT", str(Path(tmp) / "seisbench"))
        start = time.perf_counter()
        import seisbench.data  # noqa: F401  (imported by write_synthetic; timed apart)

        import seismic_ml.data.synthetic  # noqa: F401

        print(f"import: {time.perf_counter() - start:.2f} s")
        runs = [time_build(Path(tmp) / f"run{i}", args.n_traces, i) for i in range(args.repeats)]
        seconds, cpu_seconds = [r[0] for r in runs], [r[1] for r in runs]
        best, median = min(seconds), statistics.median(seconds)
        print(f"cpu: {os.cpu_count()} cores, {platform.processor() or platform.machine()}")
        print(f"write_synthetic({args.n_traces}): runs {', '.join(f'{s:.2f}' for s in seconds)} s")
        print(f"median {median:.2f} s = {args.n_traces / median:.0f} traces/s (best {best:.2f} s)")
        print(f"process cpu time: {', '.join(f'{s:.2f}' for s in cpu_seconds)} s")
        print(f"load average during the runs: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
