"""Who runs a trial or a training (host, pid, process start time) and whether it still lives.

A trial records its worker when it starts. A worker on the same host can then tell at once
that a RUNNING trial's process is gone (killed with -9, out of memory, a crashed machine that
rebooted) instead of waiting for Optuna's heartbeat grace period. The start time tells a
reused PID apart from the worker that had it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import psutil

WORKER_ATTR = "worker"  # trial user attr: {"host", "pid", "start", "pidns"}
START_TOLERANCE_S = 0.05  # psutil's start times are clock ticks (10 ms) since boot


def this_worker() -> dict[str, Any]:
    """This process's identity: hostname, pid, start time and PID namespace (None if unknown)."""
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start": process_start(pid),
        "pidns": pid_namespace(),
    }


def pid_namespace() -> str | None:
    """This process's PID namespace (containers sharing a hostname differ here), or None."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def describe(worker: object) -> str:
    """host:pid, as it appears in reasons and logs ("unknown" without a record)."""
    if not isinstance(worker, dict):
        return "unknown"
    return f"{worker.get('host')}:{worker.get('pid')}"


def process_start(pid: int) -> float | None:
    """The process's start time (seconds since the epoch, as psutil reads it), else None."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def worker_alive(host: str, pid: int, start: float | None) -> bool:
    """False only when the worker ran on this host and its process is gone (psutil: exited, a
    zombie, or its pid now another process's)."""
    if host != socket.gethostname():
        return True  # cannot tell from here: Optuna's heartbeat decides
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        created = process.create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True
    return start is None or abs(created - _seconds(start)) < START_TOLERANCE_S


def _seconds(start: float) -> float:
    """A recorded start time in seconds since the epoch; an integer is the clock ticks since
    boot that records written before psutil hold (Linux /proc/<pid>/stat field 22)."""
    if isinstance(start, int):
        return psutil.boot_time() + start / os.sysconf("SC_CLK_TCK")
    return float(start)


def is_gone(worker: object) -> bool:
    """True for a recorded worker (a user attr) on this host whose process is gone."""
    if not isinstance(worker, dict) or not isinstance(worker.get("pid"), int):
        return False
    if worker["pid"] <= 0 or worker.get("pidns") not in (None, pid_namespace()):
        return False  # another container's pid means nothing here
    return not worker_alive(str(worker.get("host")), worker["pid"], worker.get("start"))
