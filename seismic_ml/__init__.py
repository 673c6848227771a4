"""Deep-learning seismic phase picking and magnitude estimation, tracked in MLflow.

`seismic_ml.load_model(ref)` rebuilds a trained model from a run id, `runs:/`, `models:/NAME/V`
or `models:/NAME@ALIAS` without unpickling anything; it is imported on first use.
"""

from __future__ import annotations

from typing import Any

from seismic_ml.version import __version__

__all__ = ["TrainedModel", "__version__", "load_model"]
_LAZY = ("TrainedModel", "load_model")


def __getattr__(name: str) -> Any:
    """Import the loader (torch, mlflow) only when load_model or TrainedModel is asked for."""
    if name in _LAZY:
        from seismic_ml.tracking import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'seismic_ml' has no attribute {name!r}")
