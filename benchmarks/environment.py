"""The header of a benchmark report: when, on what machine, with which versions."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
PACKAGES = ("torch", "mlflow", "seisbench", "numpy")


def cpu_info() -> tuple[str, list[str]]:
    """CPU model name and which of the flags that matter for training it has."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line),
        platform.machine(),
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return model, [f for f in FLAGS if f in flags]


def git_commit() -> str:
    """The seismic_ml checkout's commit, with -dirty when it has uncommitted changes."""
    import seismic_ml

    root = Path(seismic_ml.__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def gpu() -> str:
    """The CUDA device the run could use, or 'none'."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return "none"


def versions() -> dict[str, str]:
    """Python and the packages whose speed the figures depend on."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "absent"
    return found


def header() -> dict[str, Any]:
    """Everything the report's header says about the run."""
    import psutil
    import torch

    model, flags = cpu_info()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": model,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_flags": flags,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "gpu": gpu(),
        "versions": versions(),
        "seismic_ml_commit": git_commit(),
        "seisbench_cache": os.environ.get("SEISBENCH_CACHE_ROOT", "(seisbench default)"),
        "load_average_start": round(os.getloadavg()[0], 2),
    }
