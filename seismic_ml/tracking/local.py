"""The local folder of a run: its newest checkpoint and the metrics a server outage held back."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

HOME_ENV = "SEISMIC_ML_HOME"


def home() -> Path:
    """Where seismic-ml keeps local state: $SEISMIC_ML_HOME, else ~/.cache/seismic_ml."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "seismic_ml"


def run_dir(run_id: str) -> Path:
    """The local folder of one run (not created here)."""
    return home() / "runs" / run_id


def forget_run(run_id: str) -> None:
    """Remove a run's local folder once everything in it reached the tracking server."""
    shutil.rmtree(run_dir(run_id), ignore_errors=True)
