"""Who runs a trial or a training (host, pid, process start time) and whether it still lives.

A trial records its worker when it starts. A worker on the same host can then tell at once
that a RUNNING trial's process is gone (killed with -9, out of memory, a crashed machine that
rebooted) instead of waiting for Optuna's heartbeat grace period. The start time tells a
reused PID apart from the worker that had it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

WORKER_ATTR = "worker"  # trial user attr: {"host", "pid", "start", "pidns"}
_DEAD_STATES = ("Z", "X")  # zombie (killed, not yet reaped) and dead


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


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), else None."""
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name), or None without one."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def worker_alive(host: str, pid: int, start: int | None) -> bool:
    """False only when the worker ran on this host and its process is gone."""
    if host != socket.gethostname():
        return True  # cannot tell from here: Optuna's heartbeat decides
    if Path("/proc/self/stat").exists():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in _DEAD_STATES:
            return False
        return start is None or int(stat[19]) == start
    return _pid_exists(pid)


def _pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists (where there is no /proc)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def is_gone(worker: object) -> bool:
    """True for a recorded worker (a user attr) on this host whose process is gone."""
    if not isinstance(worker, dict) or not isinstance(worker.get("pid"), int):
        return False
    if worker["pid"] <= 0 or worker.get("pidns") not in (None, pid_namespace()):
        return False  # another container's pid means nothing here
    return not worker_alive(str(worker.get("host")), worker["pid"], worker.get("start"))
