"""The tracking store: opened once per process, safely when several processes open it first."""

from __future__ import annotations

import fcntl
import hashlib
import tempfile
from collections.abc import Iterable
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seismic_ml.errors import SeismicMLError

_opened: set[str] = set()


def ensure_store() -> None:
    """Create a fresh local database store's tables under a file lock.

    MLflow migrates an empty SQLite database the first time a process opens it, without a
    lock: two trainings started at once on a new `mlflow.db` raced and one died with
    "duplicate column name". The lock makes the second wait for the first's migration.
    """
    uri = mlflow.get_tracking_uri()
    if uri in _opened or not uri.startswith(("sqlite:", "postgresql", "mysql")):
        return
    lock = Path(tempfile.gettempdir()) / f"seismic_ml-store-{_digest(uri)}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            MlflowClient().search_experiments(max_results=1)  # opens (and migrates) the store
            MlflowClient().search_registered_models(max_results=1)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    _opened.add(uri)


def experiment_id(name: str) -> str:
    """The id of an experiment, created if missing (another process may create it meanwhile)."""
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def existing_experiment_ids(names: Iterable[str]) -> list[str]:
    """Ids of experiments by name; an unknown name says which store was searched."""
    client = MlflowClient()
    ids = []
    for name in names:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise SeismicMLError(
                f"no experiment {name!r} in {mlflow.get_tracking_uri()} "
                "(set MLFLOW_TRACKING_URI to search another store)"
            )
        ids.append(found.experiment_id)
    return ids
