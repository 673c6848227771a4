"""Classical-baseline results kept per (dataset, split rows, windows): computed once, reused.

The STA/LTA picks and Wood-Anderson magnitudes of an evaluation depend only on the evaluated
windows, never on the model: every model scored on the same split would compute them again.
They are kept as `.npz` (arrays only: read with allow_pickle=False, nothing in them runs) under
`<SEISBENCH_CACHE_ROOT>/seismic_ml_baselines/<key>.npz`, the key a digest of the dataset files'
identity and the split's rows (as the screening cache keys them), the window length, seed and
normalisation, and the baseline's settings. A file is used only when it names the same
identity and holds one float per window; anything else is computed again.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import seisbench
import seisbench.data as sbd

from seismic_ml.data.screen_cache import screening_identity, write_atomically

log = logging.getLogger(__name__)
FOLDER = "seismic_ml_baselines"
VERSION = 1  # raise when a baseline computes differently: older results are then recomputed
IDENTITY = "_identity"


def baseline_identity(data: sbd.WaveformDataset, **windows: Any) -> dict[str, Any]:
    """What a baseline's results on a split's windows depend on."""
    return {
        "version": VERSION,
        "split": screening_identity(data),
        "windows": {k: _plain(v) for k, v in sorted(windows.items())},
    }


def _plain(value: Any) -> Any:
    """A JSON-able form of a settings value (dataclasses become their fields)."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    return value


def cache_path(identity: dict[str, Any]) -> Path:
    """The file of an identity: beside seisbench's datasets."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    return Path(seisbench.cache_root) / FOLDER / f"{key}.npz"


def load(
    identity: dict[str, Any], columns: tuple[str, ...], n: int
) -> dict[str, np.ndarray] | None:
    """The kept columns for these windows, or None when absent or not exactly what is needed."""
    path = cache_path(identity)
    try:
        with np.load(path, allow_pickle=False) as kept:
            if set(kept.files) != {IDENTITY, *columns}:
                raise ValueError("other columns")
            if str(kept[IDENTITY]) != json.dumps(identity, sort_keys=True):
                raise ValueError("another identity")
            found = {c: kept[c] for c in columns}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        log.warning("ignoring baseline cache %s (%s): computing it again", path, exc)
        return None
    if any(a.dtype != np.float64 or a.shape != (n,) for a in found.values()):
        log.warning("ignoring baseline cache %s (not one value per window): recomputing", path)
        return None
    return found


def save(identity: dict[str, Any], values: dict[str, np.ndarray]) -> Path | None:
    """Keep the columns, written atomically; a folder that cannot take them is a warning."""
    path = cache_path(identity)
    buffer = io.BytesIO()
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in values.items()}
    np.savez(buffer, **{IDENTITY: np.array(json.dumps(identity, sort_keys=True))}, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, buffer.getvalue())
    except OSError as exc:
        log.warning("could not keep the baseline results in %s (%s)", path, exc)
        return None
    return path
