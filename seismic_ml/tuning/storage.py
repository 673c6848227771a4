"""Optuna's RDB storage that waits out a database outage for a bounded time, then stops the worker.

Optuna does not wait for a database that went away: during an outage every storage call
raises a StorageInternalError whose message blames "invalid data ... e.g. exceeding max
length", and a failing tell ends in an UnboundLocalError inside Optuna's own trial loop.
SQLAlchemy's `pool_pre_ping` replaces the pool's dead connections once the database is back,
but it cannot wait for it. So each storage call goes through one small retry loop:
exponential backoff, one warning when the database goes away, one when it is back; past
`outage_limit_s` (counted from the first failure, shared by every call and thread) a
StorageOutage stops the worker.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from filelock import FileLock
from optuna.storages import RDBStorage

from seismic_ml import interrupts
from seismic_ml.errors import SeismicMLError, first_line
from seismic_ml.tuning.tune_config import DEFAULT_OUTAGE_LIMIT_S

HEARTBEAT_S = 60
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 5.0
CONNECT_TIMEOUT_S = 10
# Every RDBStorage method that opens its own session (what the public API and Optuna's
# _CachedStorage end in); methods given a session are parts of these, never retried alone.
RETRIED = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr",
    "get_study_id_from_name", "get_study_name_from_id", "get_study_directions",
    "get_study_user_attrs", "get_study_system_attrs", "get_trial_user_attrs",
    "get_trial_system_attrs", "get_all_studies", "_create_new_trial", "_set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value",
    "set_trial_user_attr", "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
    "get_trial", "_get_trials", "_get_best_trial_id", "_get_stale_trial_ids",
)  # fmt: skip

_LOST = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)

log = logging.getLogger(__name__)


class StorageOutage(BaseException):
    """The Optuna storage stayed unreachable past --storage-outage-limit: the worker stops.

    Like KeyboardInterrupt it is no Exception: Optuna catches every Exception raised by a
    trial and then writes the trial's end to the very storage that is gone.
    """


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """exc, then what it was raised from or while handling, and so on."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        yield exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__


def outage_in(exc: BaseException | None) -> StorageOutage | None:
    """The StorageOutage behind exc (Optuna may raise its own error while one propagates)."""
    return next((e for e in _chain(exc) if isinstance(e, StorageOutage)), None)


def lost_connection(exc: BaseException) -> BaseException | None:
    """The database driver's error when exc means the database went away, else None (bad data).

    A DB-API OperationalError or InterfaceError anywhere behind exc: Optuna wraps it in a
    StorageInternalError, or first tries a fallback query on the broken session.
    """
    for link in _chain(exc):
        invalidated = isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated
        if invalidated or isinstance(link, _LOST):
            return getattr(link, "orig", None) or link
    return None


def quiet_fallback(record: logging.LogRecord) -> bool:
    """Drop Optuna's "Caught an error from sqlalchemy ... Falling back to a slower alternative"
    unless it is what the fallback is for (SQLite's limit on query variables): after a lost
    connection the fallback fails too, and the retry loop's line says what happened."""
    message = record.getMessage()
    fallback = message.startswith("Caught an error from sqlalchemy")
    return not fallback or "too many SQL variables" in message


def _retried(name: str) -> Callable[..., Any]:
    """RDBStorage's method of that name, called through the storage's retry loop."""

    @functools.wraps(getattr(RDBStorage, name))
    def call(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        return self.patiently(getattr(RDBStorage, name), *args, **kwargs)

    return call


class PatientStorage(RDBStorage):
    """RDBStorage whose calls retry with backoff while the database is unreachable."""

    def __init__(self, url: str, outage_limit_s: float, **kwargs: Any) -> None:
        self.outage_limit_s = outage_limit_s
        self.down_since: float | None = None
        self.last_error = ""
        logging.getLogger(RDBStorage.__module__).addFilter(quiet_fallback)  # once: same object
        super().__init__(url, **kwargs)

    def patiently(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """method(self, ...) retried until the database answers or the outage limit passes."""
        delay = FIRST_DELAY_S
        while True:
            try:
                result = method(self, *args, **kwargs)
            except Exception as exc:
                cause = lost_connection(exc)
                if cause is None:
                    raise
                time.sleep(min(delay, self._went_down(cause)))
                delay = min(2 * delay, MAX_DELAY_S)
                continue
            self._came_back()
            return result

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's heartbeat thread: retried too; past the limit it stays silent (the main
        thread stops the worker), as a traceback from a thread would tell the user nothing."""
        with contextlib.suppress(StorageOutage):
            self.patiently(RDBStorage.record_heartbeat, trial_id)

    def _went_down(self, cause: BaseException) -> float:
        """Warn once per outage; the seconds left to wait, or StorageOutage past the limit
        (or at once after a stop signal). Called from the heartbeat thread as well."""
        self.last_error = first_line(cause)
        now = time.monotonic()
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "Optuna storage %s unreachable (%s): retrying for up to %.0f s "
                "(--storage-outage-limit)",
                redact(self.url),
                self.last_error,
                self.outage_limit_s,
            )
        down = now - (self.down_since or now)
        if down >= self.outage_limit_s or interrupts.received() is not None:
            raise StorageOutage(
                f"Optuna storage {redact(self.url)} unreachable for {down:.0f} s, over the "
                f"--storage-outage-limit of {self.outage_limit_s:.0f} s ({self.last_error})"
            )
        return self.outage_limit_s - down

    def _came_back(self) -> None:
        """Say once that the database answers again."""
        down_since, self.down_since = self.down_since, None
        if down_since is not None:
            down = time.monotonic() - down_since
            log.warning("Optuna storage reachable again after %.0f s", down)


for _name in RETRIED:
    setattr(PatientStorage, _name, _retried(_name))


def engine_kwargs(url: str) -> dict[str, Any]:
    """Server databases: check a pooled connection before use (dead after a database restart)
    and give up connecting after a while instead of the OS's minutes-long TCP timeout."""
    backend = sqlalchemy.engine.make_url(url).get_backend_name()
    if backend == "sqlite":
        return {}
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
    return kwargs


def make_storage(
    url: str, outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S, on_stale: Callable | None = None
) -> PatientStorage:
    """The study's storage with heartbeats; retries the schema creation racing another worker.

    A trial is stale once its heartbeat is older than the outage a worker waits out plus two
    beats: a peer never fails a trial whose worker is still waiting for the database.
    """
    kwargs = {
        "heartbeat_interval": HEARTBEAT_S,
        "grace_period": int(outage_limit_s) + 2 * HEARTBEAT_S,
        "heartbeat_stale_trial_callback": on_stale,
    }
    for attempt in range(5):
        try:
            with warnings.catch_warnings(), _schema_lock(url):
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return PatientStorage(
                    url, outage_limit_s, engine_kwargs=engine_kwargs(url), **kwargs
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
            raise SeismicMLError(
                f"cannot open Optuna storage {redact(url)}: {first_line(exc)}"
            ) from exc
    raise AssertionError("unreachable")


def _schema_lock(url: str) -> contextlib.AbstractContextManager:
    """SQLite: the workers of one file (one machine) open it one at a time. SQLite reports a
    schema creation racing another worker as an OperationalError ("table ... already exists",
    "database is locked"), not the IntegrityError a database server raises and that is retried."""
    if sqlalchemy.engine.make_url(url).get_backend_name() != "sqlite":
        return contextlib.nullcontext()
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return FileLock(Path(tempfile.gettempdir()) / f"seismic_ml-optuna-{digest}.lock")


def redact(url: str) -> str:
    """The storage URL without its password, for logs and params."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url
