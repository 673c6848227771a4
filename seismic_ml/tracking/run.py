"""MLflow run lifecycle: reuse the run `mlflow run` hands over, close it with the right status."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.tracking.fluent import _active_run_stack  # ending a run locally has no public API
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT

from seismic_ml import interrupts
from seismic_ml.errors import first_line
from seismic_ml.tracking.sender import TrackingOutage
from seismic_ml.tracking.store import ensure_store, experiment_id, mark_training_experiment
from seismic_ml.version import __version__

log = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "seismic-ml"
# mlflow.set_experiment writes MLFLOW_EXPERIMENT_ID itself: remember what the user set.
_USER_EXPERIMENT_ID = os.environ.get("MLFLOW_EXPERIMENT_ID")


def under_mlflow_project() -> bool:
    """True inside `mlflow run`, which hands us a run to reuse and an experiment to keep."""
    return bool(os.environ.get("MLFLOW_RUN_ID"))


def use_experiment(name: str | None) -> None:
    """Select the experiment unless `mlflow run` or the environment already chose one."""
    if under_mlflow_project() or mlflow.active_run() is not None:
        _warn_if_elsewhere(name)
        return
    if name is None and _USER_EXPERIMENT_ID:
        chosen = _USER_EXPERIMENT_ID
    else:
        chosen = experiment_id(
            name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        )
    mlflow.set_experiment(experiment_id=chosen)
    _restore_experiment_env()


def _warn_if_elsewhere(name: str | None) -> None:
    """Say that --experiment is ignored, only when it names another experiment than the one
    the run `mlflow run` started (or the active run) is in."""
    if not name:
        return
    active = mlflow.active_run()
    run = active or mlflow.get_run(os.environ["MLFLOW_RUN_ID"])
    wanted = mlflow.get_experiment_by_name(name)
    if wanted is None or wanted.experiment_id != run.info.experiment_id:
        chosen = mlflow.get_experiment(run.info.experiment_id).name
        log.warning("--experiment %s ignored: the run is in experiment %s", name, chosen)


@contextmanager
def tracked_run(
    run_name: str | None = None,
    experiment: str | None = None,
    resumed: Run | None = None,
    nested: bool = False,
    tags: dict[str, str] | None = None,
    killed_on: tuple[type[BaseException], ...] = (),
    system_metrics: bool = False,
) -> Iterator[mlflow.ActiveRun]:
    """Start a run (or reopen resumed, as read) and end it FINISHED, FAILED on an exception,
    KILLED on a signal.

    Exceptions in killed_on (such as Optuna's TrialPruned) mean "stopped on purpose": KILLED.
    A run whose end cannot be recorded (the server is down) stays RUNNING until `runs gc`.
    """
    ensure_store()
    run_id = None if resumed is None else resumed.info.run_id
    if resumed is not None:
        _use_experiment_of(resumed)
    elif not nested:
        use_experiment(experiment)
    with interrupts.signals_raise():
        run = mlflow.start_run(
            run_id=run_id,
            run_name=run_name,
            nested=nested,
            tags=tags,
            log_system_metrics=system_metrics,  # CPU, memory, GPU: MLflow's own sampler
        )
        try:
            if run_name and under_mlflow_project() and run_id is None:
                mlflow.set_tag("mlflow.runName", run_name)  # `mlflow run` named it at random
            mark_training_experiment(run.info.experiment_id)
            yield run
        except BaseException as exc:
            stopped = interrupts.received() is not None or isinstance(
                exc, (KeyboardInterrupt, *killed_on)
            )
            _end_quietly("KILLED" if stopped else "FAILED", exc)
            raise
        mlflow.end_run("FINISHED")


def _use_experiment_of(run: Run) -> None:
    """Make the resumed run's experiment the active one: MLflow refuses to reopen a run of
    another experiment than the one this process last selected."""
    if under_mlflow_project():
        return
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    _restore_experiment_env()


def _restore_experiment_env() -> None:
    """set_experiment exports MLFLOW_EXPERIMENT_ID, which every later subprocess (aimed perhaps
    at another store) would inherit: keep the user's environment as it was."""
    if _USER_EXPERIMENT_ID is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = _USER_EXPERIMENT_ID


def _end_quietly(status: str, error: BaseException) -> None:
    """End the active run while an error propagates; a tracking failure must not mask it."""
    if isinstance(error, TrackingOutage):
        _pop_active_run()
        return
    try:
        mlflow.end_run(status)
    except Exception as exc:  # the original error matters more
        log.warning("could not mark the run %s: %s", status, first_line(exc))


def _pop_active_run() -> None:
    """Forget the active run without telling the unreachable server (it stays RUNNING)."""
    _active_run_stack.get().clear()
    os.environ.pop("MLFLOW_RUN_ID", None)


def run_name(*parts: str) -> str:
    """A readable, unique run name: the parts (model type, dataset ...), the time and four hex
    digits from the OS (not `random`, which training seeds: seeded names repeat)."""
    words = [re.sub(r"[^A-Za-z0-9_.]+", "", Path(p).name or p) for p in parts if p]
    return "-".join([*words, time.strftime("%Y%m%d-%H%M%S"), os.urandom(2).hex()])


def standard_tags(task: str, model_type: str, dataset: str) -> dict[str, str]:
    """The tags every training run carries: what it trained on, and package_tags()."""
    return {"task": task, "model_type": model_type, "dataset": dataset, **package_tags()}


def package_tags() -> dict[str, str]:
    """The package's version and, in a checkout, its commit as MLflow's own source tag."""
    tags = {"seismic_ml.version": __version__}
    commit = git_commit()
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


def git_commit() -> str | None:
    """The commit of the package's checkout, or None outside one. MLflow's own source tags
    read the repository of the script that started Python, which for the `seismic-ml` console
    script or a notebook is not the one holding the code that trained."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
