"""The tracking store: opened once per process, safely when several processes open it first."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seismic_ml.errors import SeismicMLError

KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
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
    # MLflow logs a full traceback for every failed write to a database store; the error also
    # reaches the caller, which says it in one line (a full disk, say): keep the logs to that
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    lock = Path(tempfile.gettempdir()) / f"seismic_ml-store-{_digest(uri)}.lock"
    with FileLock(lock):
        MlflowClient().search_experiments(max_results=1)  # opens (and migrates) the store
        MlflowClient().search_registered_models(max_results=1)
    _opened.add(uri)


def experiment_id(name: str) -> str:
    """The id of an experiment, created if missing (another process may create it meanwhile)."""
    client = MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        mark_training_experiment(found.experiment_id)
        return found.experiment_id
    try:
        return client.create_experiment(name, tags={KIND_TAG: TRAINING_KIND})
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def mark_training_experiment(experiment_id: str) -> None:
    """Make MLflow's UI open the experiment on its runs (not its GenAI view), unless a user
    chose a kind for it already."""
    client = MlflowClient()
    if KIND_TAG not in client.get_experiment(experiment_id).tags:
        client.set_experiment_tag(experiment_id, KIND_TAG, TRAINING_KIND)


CHOOSE_STORE = "set MLFLOW_TRACKING_URI to search another store or server"


def require_store() -> None:
    """Refuse a read-only command on a local database store that does not exist (MLflow would
    create an empty one and then report that nothing is found)."""
    uri = mlflow.get_tracking_uri()
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise SeismicMLError(
            f"no tracking store here: {uri} does not exist (MLflow's default is "
            "./mlflow.db in the current folder); set MLFLOW_TRACKING_URI to the store or "
            "server that holds your runs"
        )


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
