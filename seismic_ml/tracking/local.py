"""The local folder of a run: its newest checkpoint and the metrics a server outage held back."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from seismic_ml.workers import is_gone, this_worker

HOME_ENV = "SEISMIC_ML_HOME"
OWNER_NAME = "owner.json"


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


def claim(run_id: str) -> None:
    """Record this process as the one training the run (read by owner_gone)."""
    folder = run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OWNER_NAME).write_text(json.dumps(this_worker()))


def owner_gone(run_id: str) -> bool:
    """True when the process on this machine that last trained the run has exited."""
    try:
        owner = json.loads((run_dir(run_id) / OWNER_NAME).read_text())
    except (OSError, ValueError):
        return False
    return is_gone(owner)
