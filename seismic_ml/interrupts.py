"""Ctrl-C and SIGTERM as one exception raised where the code can close its run cleanly.

A signal handler records the signal. Outside a `deferred()` block it raises at once; inside
one (the training loop's steps) the loop raises at its next `check()`, so the exception never
surfaces from inside a library call that could swallow or rewrap it. Whatever exception a
process ends with, `received()` still says a signal stopped it: the exit code and the run's
KILLED status come from that, not from the exception's type.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
_state: dict[str, int | None] = {"signum": None, "deferred": 0}


class Interrupted(KeyboardInterrupt):
    """The process received Ctrl-C or SIGTERM; exit_code is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"{SIGNAL_NAMES.get(signum, f'signal {signum}')} received")
        self.signum = signum
        self.exit_code = 128 + signum


def received() -> int | None:
    """The signal number that asked this process to stop, or None."""
    return _state["signum"]


def check() -> None:
    """Raise Interrupted if a stop signal arrived; called at safe points such as step ends."""
    signum = _state["signum"]
    if signum is not None:
        raise Interrupted(signum)


def _handle(signum: int, frame: object) -> None:
    first = _state["signum"] is None
    _state["signum"] = signum
    if not (first and _state["deferred"]):
        raise Interrupted(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """Install the Ctrl-C and SIGTERM handlers for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in SIGNAL_NAMES}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred() -> Iterator[None]:
    """Inside the block the first signal is only recorded; `check()` raises it. A second raises."""
    _state["deferred"] = (_state["deferred"] or 0) + 1
    try:
        yield
    finally:
        _state["deferred"] -= 1


class HasStatus(Protocol):
    """A record with a status, as MLflow's runs have one."""

    status: str


@contextmanager
def status_of(record: HasStatus) -> Iterator[None]:
    """record.status says how the block went, as MLflow's run statuses do: RUNNING inside it,
    then FINISHED, FAILED, or KILLED when Ctrl-C or a stop signal ended it."""
    record.status = "RUNNING"
    try:
        yield
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt) or received() is not None
        record.status = "KILLED" if stopped else "FAILED"
        raise
    record.status = "FINISHED"
