"""Who trains a run: an exclusive claim, taken atomically in the tracking store itself.

Two `--resume` of one run may start at the same moment on two machines; only one may go on.
MLflow has no compare-and-set on tags, but a param, once logged, cannot change: the store keeps
(run, key) unique in one transaction (a primary key in SQL stores, checked by the server), and a
second value for the same key is refused. So the n-th claim of a run is the param
`seismic_ml.claim.<n>` holding its owner (host, pid, start, time, a random nonce, so two claims
are never equal: MLflow accepts a second, identical value): whoever logs it first owns the
run; the other gets MLflow's refusal and stops, naming the owner. The claims also stay on the run
as its record of who trained it, when. Fresh runs take claim 0; each resume the next one.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from seismic_ml.errors import SeismicMLError
from seismic_ml.workers import describe, is_gone, this_worker

CLAIM_PREFIX = "seismic_ml.claim."


class RunClaimed(SeismicMLError):
    """Another process holds the run."""


def claims(run: Run) -> dict[int, dict[str, Any]]:
    """The run's claims by number (unreadable values count as an unknown owner)."""
    found = {}
    for key, value in run.data.params.items():
        number = key.removeprefix(CLAIM_PREFIX)
        if key.startswith(CLAIM_PREFIX) and number.isdigit():
            found[int(number)] = _owner(value)
    return found


def _owner(value: str) -> dict[str, Any]:
    try:
        owner = json.loads(value)
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def latest_claim(run: Run) -> dict[str, Any] | None:
    """The owner of the run's newest claim, or None for a run never claimed."""
    found = claims(run)
    return found[max(found)] if found else None


def claim_age(owner: dict[str, Any], now: float | None = None) -> float | None:
    """Seconds since the claim was taken (None when it does not say)."""
    taken = owner.get("time")
    return (now or time.time()) - taken if isinstance(taken, (int, float)) else None


def held_by_another(run: Run, stale_after_s: float) -> dict[str, Any] | None:
    """The newest claim's owner while it may still be training the run, else None.

    A claim holds while it is younger than stale_after_s, unless its owner is known gone (it
    ran on this machine and its process exited) or ended the run after taking it: the
    claimant may not have reopened the run or sent its first heartbeat yet.
    """
    owner = latest_claim(run)
    if owner is None or _is_me(owner) or is_gone(owner):
        return None
    age = claim_age(owner)
    ended_s = (run.info.end_time or 0) / 1000.0
    ended_after = run.info.status != "RUNNING" and ended_s >= owner.get("time", float("inf"))
    if age is None or age > stale_after_s or ended_after:
        return None
    return owner


def _is_me(owner: dict[str, Any]) -> bool:
    me = this_worker()
    return all(owner.get(k) == me[k] for k in ("host", "pid", "start"))


def next_claim(run: Run) -> int:
    """The number the next claim of the run takes."""
    return max(claims(run), default=-1) + 1


def take_claim(run_id: str, number: int) -> None:
    """Claim the run for this process as claim `number`; RunClaimed when another got it first."""
    me = {**this_worker(), "time": round(time.time(), 3), "nonce": uuid.uuid4().hex}
    try:
        _log_claim(run_id, f"{CLAIM_PREFIX}{number}", json.dumps(me, sort_keys=True))
    except MlflowException as exc:
        if "Changing param values is not allowed" not in str(exc):
            raise
        winner = claims(MlflowClient().get_run(run_id)).get(number, {})
        raise RunClaimed(
            f"run {run_id} was claimed by {describe(winner)} a moment ago (claim {number}): "
            "that process is resuming it, this one stops"
        ) from None


def _log_claim(run_id: str, key: str, value: str, attempts: int = 5) -> None:
    """log_param, tried again after a transient store error (a busy SQLite database under
    racing writers); the store's refusal of a second value is raised at once."""
    for attempt in range(attempts):
        try:
            MlflowClient().log_param(run_id, key, value)
            return
        except MlflowException as exc:
            if "Changing param values is not allowed" in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
