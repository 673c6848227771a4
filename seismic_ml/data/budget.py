"""Memory budgets given by a person: '50%' of the available memory, '2GB', '512MB', bytes."""

from __future__ import annotations

import re

import psutil

from seismic_ml.errors import BadOptionValue

_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "M": 2**20, "MB": 2**20, "G": 2**30, "GB": 2**30}
_BUDGET = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>%|[KMG]?B?)\s*$", re.IGNORECASE)


def parse_budget(text: str, available: int | None = None) -> int:
    """Bytes from '50%' (of the memory available now), '2GB', '512M' or a plain byte count."""
    match = _BUDGET.match(str(text))
    if not match:
        raise BadOptionValue(
            f"memory_budget {text!r} is not a size such as 50%, 2GB or 512MB (0: always stream)"
        )
    number, unit = float(match["number"]), match["unit"].upper()
    if unit == "%":
        if number > 100:
            raise BadOptionValue(f"memory_budget {text!r} is more than 100% of the memory")
        available = psutil.virtual_memory().available if available is None else available
        return int(available * number / 100)
    return int(number * _UNITS[unit])
