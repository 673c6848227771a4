"""A failure of the tracking store (an MlflowException) as one line for a person. It imports
nothing of MLflow itself: --help and usage errors never load it, and then none was raised."""

from __future__ import annotations

import sys

from seismic_ml.errors import first_line


def tracking_error_line(exc: BaseException) -> str | None:
    """`tracking store URI: reason` for an MlflowException; None for any other error."""
    if "mlflow" not in sys.modules:  # one can only have been raised once mlflow was imported
        return None
    import mlflow
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return None
    return f"tracking store {mlflow.get_tracking_uri()}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    """An MLflow error in one line; a refused login says which variables carry credentials."""
    text = str(exc)
    if any(f"error code {code}" in text for code in (401, 403)) or "not authenticated" in text:
        return (
            "the server refused the credentials (set MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD to an account it knows)"
        )
    return first_line(exc)
