"""Lost runs: RUNNING in MLflow, but their process died (SIGKILL, OOM, a lost node).

A training run refreshes the tag `seismic_ml.heartbeat` (unix seconds) while it lives. A
RUNNING run whose heartbeat is older than a limit is lost: `fail_lost_runs` marks it FAILED
with a tag saying why, and `--resume` continues it from its last checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mlflow.entities import Run, RunStatus, ViewType
from mlflow.tracking import MlflowClient

from seismic_ml.tracking.sender import HEARTBEAT_TAG

DEFAULT_STALE_AFTER_S = 600.0
REASON_TAG = "seismic_ml.failed_reason"


@dataclass
class LostRun:
    """A RUNNING run whose heartbeat stopped."""

    run_id: str
    run_name: str
    experiment_id: str
    silent_s: float


def heartbeat_age(run: Run, now: float | None = None) -> float | None:
    """Seconds since the run's last heartbeat, or None when it never sent one."""
    beat = run.data.tags.get(HEARTBEAT_TAG)
    if beat is None:
        return None
    try:
        return (now or time.time()) - float(beat)
    except ValueError:
        return None


def find_lost_runs(
    stale_after_s: float = DEFAULT_STALE_AFTER_S, experiment_ids: list[str] | None = None
) -> list[LostRun]:
    """RUNNING runs with a heartbeat older than stale_after_s (runs without one are left alone)."""
    client = MlflowClient()
    if experiment_ids is None:
        experiments = client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        experiment_ids = [e.experiment_id for e in experiments]
    if not experiment_ids:
        return []
    now = time.time()
    running = client.search_runs(
        experiment_ids, "attributes.status = 'RUNNING'", max_results=50_000
    )
    lost = []
    for run in running:
        age = heartbeat_age(run, now)
        if age is not None and age > stale_after_s:
            name = run.info.run_name or run.info.run_id
            lost.append(LostRun(run.info.run_id, name, run.info.experiment_id, age))
    return lost


def fail_lost_run(lost: LostRun, stale_after_s: float) -> None:
    """Mark one lost run FAILED, saying why, unless it came back to life meanwhile."""
    client = MlflowClient()
    run = client.get_run(lost.run_id)
    age = heartbeat_age(run)
    if run.info.status != "RUNNING" or age is None or age <= stale_after_s:
        return
    reason = (
        f"no heartbeat for {age:.0f} s (limit {stale_after_s:.0f} s): the training process "
        "is gone; marked FAILED by `seismic-ml runs gc`, resumable with --resume"
    )
    client.set_tag(lost.run_id, REASON_TAG, reason)
    client.set_terminated(lost.run_id, RunStatus.to_string(RunStatus.FAILED))
