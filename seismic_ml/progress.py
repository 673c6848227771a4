"""What a person sees while a command works: short lines on stderr, silenced by --quiet.

Lines go to stderr whether or not it is a terminal (a log file, `tee`, CI see them too);
per-step bars only on a terminal. stdout stays for results (tables, run ids).
"""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

_settings = {"quiet": False}


def set_quiet(quiet: bool) -> None:
    """Silence (or restore) progress lines and bars for this process."""
    _settings["quiet"] = quiet


def quiet() -> bool:
    """True after --quiet."""
    return _settings["quiet"]


def note(message: str) -> None:
    """One progress line on stderr, unless quiet."""
    if not _settings["quiet"]:
        print(message, file=sys.stderr, flush=True)


def bars() -> bool:
    """Whether per-step progress bars are wanted: a terminal, not quiet."""
    return not _settings["quiet"] and sys.stderr.isatty()


def size(nbytes: int) -> str:
    """A memory size for a person: 1.4 GB, 12 MB."""
    return f"{nbytes / 2**30:.1f} GB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MB"


LINE_EVERY_S = 10.0  # without a terminal: one line at the start, then at most this often


class Counter:
    """How far a long read is: a bar on a terminal; else a line when it starts, one every
    LINE_EVERY_S while it runs, and one when it ends if it took that long (--quiet: none)."""

    def __init__(self, what: str, total: int, unit: str = "traces") -> None:
        self.what, self.total, self.unit, self.done = what, total, unit, 0
        self.started = self.said = time.monotonic()
        self.bar = tqdm(total=total, desc=what, unit=f" {unit}", leave=False) if bars() else None
        if self.bar is None:
            note(f"{what} ({total} {unit})")

    def update(self, n: int) -> None:
        """n more done."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif time.monotonic() - self.said >= LINE_EVERY_S:
            self.said = time.monotonic()
            note(f"{self.what}: {self.done}/{self.total} {self.unit} ({self._percent()})")

    def close(self) -> None:
        """The end: the bar goes; a line says how long it took when lines were said on the way."""
        if self.bar is not None:
            self.bar.close()
        elif self.said > self.started:
            note(f"{self.what}: {self.done} {self.unit} in {time.monotonic() - self.started:.0f} s")

    def _percent(self) -> str:
        return f"{100 * self.done / self.total:.0f}%" if self.total else "-"

    def __enter__(self) -> Counter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
