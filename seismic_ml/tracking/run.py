"""MLflow run lifecycle: reuse the run `mlflow run` hands over, close it with the right status."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow

import seismic_ml

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "seismic-ml"
# mlflow.set_experiment writes MLFLOW_EXPERIMENT_ID itself: remember what the user set.
_USER_EXPERIMENT_ID = os.environ.get("MLFLOW_EXPERIMENT_ID")


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM."""


def under_mlflow_project() -> bool:
    """True inside `mlflow run`, which hands us a run to reuse and an experiment to keep."""
    return bool(os.environ.get("MLFLOW_RUN_ID"))


def use_experiment(name: str | None) -> None:
    """Select the experiment unless `mlflow run` or the environment already chose one."""
    if under_mlflow_project() or mlflow.active_run() is not None:
        if name:
            log.warning("--experiment %s ignored: `mlflow run` chose the experiment", name)
        return
    if name is None and _USER_EXPERIMENT_ID:
        mlflow.set_experiment(experiment_id=_USER_EXPERIMENT_ID)
        return
    mlflow.set_experiment(name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)


@contextmanager
def tracked_run(
    run_name: str | None = None,
    experiment: str | None = None,
    run_id: str | None = None,
    nested: bool = False,
    tags: dict[str, str] | None = None,
    killed_on: tuple[type[BaseException], ...] = (),
) -> Iterator[mlflow.ActiveRun]:
    """Start (or resume) a run and end it FINISHED, FAILED on an exception, KILLED on a signal.

    Exceptions in killed_on (such as Optuna's TrialPruned) mean "stopped on purpose": KILLED.
    """
    if run_id is None and not nested:
        use_experiment(experiment)
    with sigterm_raises():
        run = mlflow.start_run(run_id=run_id, run_name=run_name, nested=nested, tags=tags)
        try:
            yield run
        except (KeyboardInterrupt, *killed_on):
            mlflow.end_run("KILLED")
            raise
        except BaseException:
            mlflow.end_run("FAILED")
            raise
        mlflow.end_run("FINISHED")


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception so the run can be closed as KILLED."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise Terminated(f"received signal {signum}")

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def standard_tags(task: str, model_type: str, dataset: str) -> dict[str, str]:
    """The tags every training run carries."""
    return {
        "task": task,
        "model_type": model_type,
        "dataset": dataset,
        "git_commit": git_commit(),
        "seismic_ml.version": seismic_ml.__version__,
    }


def git_commit() -> str:
    """The commit of the code that ran, or 'unknown' outside a git checkout."""
    root = Path(seismic_ml.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"
