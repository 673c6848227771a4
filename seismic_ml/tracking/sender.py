"""A run's metrics sent in batches by a background thread, with a heartbeat, surviving outages.

Training never waits on the tracking server: metrics queue in memory and a thread sends them
with `log_batch` every interval, together with the run's heartbeat tag. Every queued metric is
also appended to a spool file next to the run's local checkpoint (a write-ahead log, emptied
whenever the queue is), so neither an outage longer than MLflow's retries nor a killed process
loses one: the thread keeps sending in order once the server answers, and a `--resume` of the
run sends what a dead process left. MLflow stores a metric identical in key, value, step and
timestamp once, so a metric sent twice is never a duplicate.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from requests.exceptions import RequestException

from seismic_ml.errors import SeismicMLError, first_line

HEARTBEAT_TAG = "seismic_ml.heartbeat"
SEND_INTERVAL_S = 30.0
MAX_BATCH = 1000
SPOOL_NAME = "spool.jsonl"
REPLAY_ATTEMPTS = 4
# What a failed send looks like: the server unreachable, or answering with an error.
SEND_ERRORS = (MlflowException, RequestException, OSError)

log = logging.getLogger(__name__)


# A local store that cannot be written is not an outage to wait out: it fails at once.
_STORE_FULL = ("disk is full", "No space left on device", "readonly database", "read-only")


class TrackingOutage(SeismicMLError):
    """The tracking server stayed unreachable for longer than the configured limit."""


class TrackingStoreFull(TrackingOutage):
    """The tracking store refuses writes (a full disk, a read-only file): waiting cannot help."""


def client_retries(outage_limit_s: float) -> dict[str, str]:
    """MLflow's HTTP retry settings sized so one request gives up within the outage limit.

    MLflow retries a request 5 times with exponential backoff and waits up to 120 s for each
    answer: about 12 minutes against a stalled server, whatever the limit. Here the backoff
    fits in a quarter of the limit and the attempts' timeouts in half of it.
    """
    budget = max(outage_limit_s, 1.0)
    retries = max(0, min(5, int(math.log2(budget / 4 + 1))))
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(min(120, max(2, budget / (2 * (retries + 1)))))),
    }


@contextmanager
def fitted_client_retries(outage_limit_s: float) -> Iterator[dict[str, str]]:
    """MLflow's client (it reads these at every request) retries within the outage limit for
    the block; a variable the user set is kept."""
    chosen = {k: v for k, v in client_retries(outage_limit_s).items() if k not in os.environ}
    os.environ.update(chosen)
    try:
        yield chosen
    finally:
        for key in chosen:
            os.environ.pop(key, None)


class MetricSender:
    """Queue of one run's metrics; a daemon thread sends it with the heartbeat every interval."""

    def __init__(
        self,
        run_id: str,
        local_dir: Path,
        interval_s: float = SEND_INTERVAL_S,
        outage_limit_s: float = 900.0,
    ) -> None:
        self.run_id = run_id
        self.spool = local_dir / SPOOL_NAME
        self.interval_s = interval_s
        self.outage_limit_s = outage_limit_s
        self.client = MlflowClient()
        self.pending: list[Metric] = []
        local_dir.mkdir(parents=True, exist_ok=True)
        self._spool = open(self.spool, "a")  # noqa: SIM115 (open for the sender's lifetime)
        self.upload: tuple[Path, str, int] | None = None  # newest file not yet uploaded
        self._generation = 0
        self.down_since: float | None = None
        self.last_error = ""
        self.store_full = False
        self.spool_broken = False
        self._queue_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, metrics: Iterable[Metric]) -> None:
        """Queue metrics, in order, and append them to the spool; the thread sends them."""
        metrics = list(metrics)
        lines = "".join(json.dumps([m.key, m.value, m.timestamp, m.step]) + "\n" for m in metrics)
        with self._queue_lock:
            self.pending.extend(metrics)
            self._write_spool(lines)

    def _write_spool(self, lines: str) -> None:
        """Append to the spool; a full disk costs the outage protection, not the metrics."""
        if self.spool_broken:
            return
        try:
            self._spool.write(lines)
            self._spool.flush()
        except OSError as exc:
            self.spool_broken = True
            log.warning(
                "cannot write the metric spool %s (%s): metrics go to the tracking server from "
                "memory only, an outage now would lose them",
                self.spool,
                exc.strerror or exc,
            )

    def upload_later(self, path: Path, artifact_dir: str) -> None:
        """Upload this file after the queued metrics (a newer one replaces a pending one)."""
        with self._queue_lock:
            self._generation += 1
            self.upload = (path, artifact_dir, self._generation)

    def start(self) -> MetricSender:
        """Start the sending thread (sends a first heartbeat right away)."""
        self._thread = threading.Thread(target=self._run, name="seismic_ml-sender", daemon=True)
        self._thread.start()
        return self

    def request_send(self) -> None:
        """Ask the thread to send now (epoch ends) instead of at its next interval."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.send()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def send(self) -> bool:
        """Send everything queued plus the heartbeat; False (and spooled) when the server fails."""
        with self._send_lock:
            try:
                self._send_all()
            except SEND_ERRORS as exc:
                self._went_down(exc)
                return False
            self._came_back()
            return True

    def _send_all(self) -> None:
        heartbeat = [RunTag(HEARTBEAT_TAG, str(int(time.time())))]
        while True:
            with self._queue_lock:
                batch = self.pending[:MAX_BATCH]
            if not batch and not heartbeat:
                break
            self.client.log_batch(self.run_id, metrics=batch, tags=heartbeat)
            heartbeat = []
            with self._queue_lock:
                del self.pending[: len(batch)]
                if not self.pending:
                    self._spool.truncate(0)
        with self._queue_lock:
            upload = self.upload
        if upload is not None:
            self.client.log_artifact(self.run_id, str(upload[0]), upload[1])
            with self._queue_lock:
                if self.upload == upload:
                    self.upload = None

    def _went_down(self, exc: BaseException) -> None:
        full = [line for line in str(exc).splitlines() if any(s in line for s in _STORE_FULL)]
        self.store_full = bool(full)
        self.last_error = full[0].strip() if full else first_line(exc)
        if self.down_since is None:
            self.down_since = time.monotonic()
            if not self.store_full:  # a full store is said once, by the error that stops training
                log.warning("tracking server unreachable, spooling metrics: %s", self.last_error)
        with self._queue_lock, contextlib.suppress(OSError):  # a full disk: warned in add()
            os.fsync(self._spool.fileno())  # the unsent metrics survive even a power cut

    def _came_back(self) -> None:
        if self.down_since is not None:
            log.warning("tracking server reachable again: spooled metrics sent")
        self.down_since = None

    @property
    def outage_s(self) -> float:
        """Seconds the server has been unreachable (0 when it answers)."""
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    def check_outage(self, checkpoint: Path | None) -> None:
        """Raise TrackingOutage once the outage outlasts the limit (the run stays resumable)."""
        if self.store_full:
            raise self._full_error()
        if self.outage_s <= self.outage_limit_s:
            return
        where = f"local checkpoint {checkpoint}" if checkpoint else f"spool {self.spool}"
        raise TrackingOutage(
            f"tracking server unreachable for {self.outage_s:.0f} s, over the "
            f"--tracking-outage-limit of {self.outage_limit_s:.0f} s ({self.last_error}); "
            f"training stopped, {where} kept; resume with --resume {self.run_id} "
            "once the server answers"
        )

    def _full_error(self) -> TrackingStoreFull:
        return TrackingStoreFull(
            f"the tracking store refuses writes ({self.last_error}): {len(self.pending)} "
            f"metrics of run {self.run_id} are kept in {self.spool}; free space and resume "
            f"with --resume {self.run_id}"
        )

    def close(self, wait_s: float | None = None) -> None:
        """Stop the thread and send what is left, retrying until the outage limit (or wait_s)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        began = self.down_since if self.down_since is not None else time.monotonic()
        deadline = began + self.outage_limit_s if wait_s is None else time.monotonic() + wait_s
        while not self.send():
            if self.store_full:
                raise self._full_error()
            if time.monotonic() >= deadline:
                raise TrackingOutage(
                    f"tracking server unreachable ({self.last_error}): {len(self.pending)} "
                    f"metrics of run {self.run_id} are kept in {self.spool}; resume with "
                    f"--resume {self.run_id} once the server answers"
                )
            time.sleep(min(2.0, max(deadline - time.monotonic(), 0)))
        with contextlib.suppress(OSError):
            self._spool.close()
        self.spool.unlink(missing_ok=True)


def replay_spool(run_id: str, local_dir: Path) -> int:
    """Send a spool left by a process that died during an outage; returns how many metrics."""
    spool = local_dir / SPOOL_NAME
    if not spool.exists():
        return 0
    metrics = [Metric(k, v, t, s) for k, v, t, s in map(json.loads, _lines(spool))]
    client = MlflowClient()
    for start in range(0, len(metrics), MAX_BATCH):
        _send_with_retries(client, run_id, metrics[start : start + MAX_BATCH])
    spool.unlink()
    return len(metrics)


def _send_with_retries(client: MlflowClient, run_id: str, batch: list[Metric]) -> None:
    """log_batch, tried again after a refusal: a server that just came back may still be
    storing the same metrics from the dead process's last request (a transient conflict)."""
    for attempt in range(REPLAY_ATTEMPTS):
        try:
            client.log_batch(run_id, metrics=batch)
            return
        except SEND_ERRORS:
            if attempt == REPLAY_ATTEMPTS - 1:
                raise
            time.sleep(1.0 + attempt)


def _lines(path: Path) -> list[str]:
    """The complete lines of a file (a torn last line from a crash is dropped)."""
    return [line for line in path.read_text().split("\n")[:-1] if line]
