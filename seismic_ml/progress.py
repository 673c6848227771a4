"""What a person sees while a command works: short lines on stderr, silenced by --quiet.

Lines go to stderr whether or not it is a terminal (a log file, `tee`, CI see them too);
per-step bars only on a terminal. stdout stays for results (tables, run ids).
"""

from __future__ import annotations

import sys

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
