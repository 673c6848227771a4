"""Redirect every cache and store to a temporary folder before anything imports seisbench."""

import os
import tempfile
from pathlib import Path

import pytest

_ROOT = Path(tempfile.mkdtemp(prefix="seismic_ml_tests_"))
os.environ["SEISBENCH_CACHE_ROOT"] = str(_ROOT / "seisbench")
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_ROOT / 'mlflow.db'}"
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
os.environ["GIT_PYTHON_REFRESH"] = "quiet"


@pytest.fixture(scope="session")
def test_root() -> Path:
    """The session's scratch folder holding the seisbench cache and the default MLflow store."""
    return _ROOT
