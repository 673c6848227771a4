"""How much one request to the served model may hold: SEISMIC_ML_SERVE_MAX_WINDOWS windows.

MLflow's scoring server has no request body limit (see README, Serving): the body is read and
parsed into a table before the model sees it. This limit is the earliest the model can refuse:
on the table's row count, before any array or tensor is built from it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from seismic_ml.errors import SeismicMLError
from seismic_ml.serving.refusal import RequestTooLarge

MAX_WINDOWS_ENV = "SEISMIC_ML_SERVE_MAX_WINDOWS"
DEFAULT_MAX_WINDOWS = 512


def max_windows(environ: Mapping[str, str] = os.environ) -> int:
    """The per-request window limit set in the environment (DEFAULT_MAX_WINDOWS when unset)."""
    text = environ.get(MAX_WINDOWS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_WINDOWS
    if not text.isdigit() or int(text) < 1:
        raise SeismicMLError(
            f"{MAX_WINDOWS_ENV} must be a whole number of windows >= 1, not {text!r}"
        )
    return int(text)


def check_size(rows: int, in_samples: int, limit: int) -> None:
    """Refuse a table of more rows than `limit` windows of `in_samples` rows hold."""
    if rows > limit * in_samples:
        windows = math.ceil(rows / in_samples)
        raise RequestTooLarge(
            f"request too large: {rows} rows, about {windows} windows of {in_samples} samples; "
            f"this server takes at most {limit} windows per request ({MAX_WINDOWS_ENV}), "
            f"send them in smaller requests"
        )
