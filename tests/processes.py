"""Server subprocesses for tests and benchmarks: a free port, waiting until one answers, stopping
its whole process group. One copy, imported by tests/ and benchmarks/ alike."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_answering(
    url: str,
    proc: subprocess.Popen,
    log: Path | None = None,
    timeout: float = 150.0,
    path: str = "/health",
) -> None:
    """Poll url + path until it answers 200 (MLflow's /health also says OK); RuntimeError with
    the process's log when it exits first or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
                if response.status == 200 and response.read().decode().strip() in ("OK", ""):
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url}{path} did not answer within {timeout:.0f} s{_tail(log)}")


def _tail(log: Path | None) -> str:
    return f":\n{log.read_text(errors='replace')[-5000:]}" if log and log.exists() else ""


def stop_group(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """End a process started with start_new_session=True and its workers: SIGCONT (it may be
    stopped), SIGTERM, then SIGKILL after grace_s."""
    try:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass
