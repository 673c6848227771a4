"""The local folder of a run: its newest checkpoint and the metrics a server outage held back."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

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
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid())}
    (folder / OWNER_NAME).write_text(json.dumps(owner))


def owner_gone(run_id: str) -> bool:
    """True when this machine's process that last trained the run has exited."""
    path = run_dir(run_id) / OWNER_NAME
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if owner.get("host") != socket.gethostname():
        return False
    return process_start(int(owner["pid"])) != owner.get("start")


def process_start(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), so a reused pid is not taken for it;
    None when no such process runs. Without /proc (not Linux) only liveness is known."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]
