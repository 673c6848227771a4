"""The Optuna storage's outage handling, and trials whose worker lost the storage after training."""

from __future__ import annotations

import inspect
import logging
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from click.testing import CliRunner
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from seismic_ml.cli.tuning import tune as tune_command
from seismic_ml.tracking.study_runs import MlflowStudyRecorder
from seismic_ml.tuning import storage as storage_module
from seismic_ml.tuning.report import TuneResult
from seismic_ml.tuning.storage import (
    RETRIED,
    PatientStorage,
    StorageOutage,
    engine_kwargs,
    lost_connection,
    make_storage,
    outage_in,
    quiet_fallback,
)
from seismic_ml.tuning.trials import fail_gone_trials, stale_trial_callback
from seismic_ml.tuning.tune_config import DEFAULT_OUTAGE_LIMIT_S
from seismic_ml.workers import WORKER_ATTR

REFUSED = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("Connection refused"))


@pytest.fixture
def storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PatientStorage:
    """A SQLite storage that waits out 1 s of outage, retrying every 10 ms."""
    monkeypatch.setattr(storage_module, "FIRST_DELAY_S", 0.01)
    monkeypatch.setattr(storage_module, "MAX_DELAY_S", 0.05)
    return PatientStorage(f"sqlite:///{tmp_path / 'optuna.db'}", outage_limit_s=1.0)


def flaky(failures: int, error: Exception) -> Any:
    """A storage method that raises error (as Optuna wraps it) failures times, then answers."""
    calls = []

    def method(self: RDBStorage, *args: Any) -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise optuna.exceptions.StorageInternalError("exceeding max length") from error
        return "answer"

    method.calls = calls
    return method


def test_a_call_waits_out_an_outage_and_says_so(
    storage: PatientStorage, caplog: pytest.LogCaptureFixture
) -> None:
    method = flaky(3, REFUSED)
    with caplog.at_level(logging.WARNING):
        assert storage.patiently(method) == "answer"
    assert len(method.calls) == 4
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and "unreachable (Connection refused)" in lines[0]
    assert "reachable again" in lines[1] and "max length" not in " ".join(lines)


def test_past_the_limit_the_worker_stops_with_one_line(storage: PatientStorage) -> None:
    began = time.monotonic()
    with pytest.raises(StorageOutage) as raised:
        storage.patiently(flaky(10**6, REFUSED))
    assert 1.0 <= time.monotonic() - began < 2.0
    assert not isinstance(raised.value, Exception)  # Optuna's trial loop must not catch it
    message = str(raised.value)
    assert "over the --storage-outage-limit of 1 s (Connection refused)" in message
    assert "\n" not in message


def test_other_errors_are_not_retried(storage: PatientStorage) -> None:
    bad_data = sqlalchemy.exc.DataError("INSERT", {}, Exception("value too long"))
    method = flaky(1, bad_data)
    with pytest.raises(optuna.exceptions.StorageInternalError):
        storage.patiently(method)
    assert len(method.calls) == 1


def test_a_lost_connection_is_found_behind_optunas_fallback_query() -> None:
    try:
        try:
            raise REFUSED  # the first query: the server is gone
        except sqlalchemy.exc.OperationalError:
            raise sqlalchemy.exc.PendingRollbackError("Can't reconnect until ...") from None
    except sqlalchemy.exc.PendingRollbackError as exc:
        wrapped = optuna.exceptions.StorageInternalError("e.g. exceeding max length")
        wrapped.__cause__ = exc
    assert str(lost_connection(wrapped)) == "Connection refused"
    assert lost_connection(optuna.exceptions.StorageInternalError("bad data")) is None


def test_optunas_fallback_warning_is_dropped_unless_it_is_about_sqlite_variables() -> None:
    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("optuna", logging.WARNING, "", 0, message, None, None)

    lost = "Caught an error from sqlalchemy: server closed the connection. Falling back to ..."
    limit = "Caught an error from sqlalchemy: too many SQL variables. Falling back to ..."
    assert not quiet_fallback(record(lost))
    assert quiet_fallback(record(limit)) and quiet_fallback(record("Trial 0 finished"))


def test_the_heartbeat_thread_stays_silent_past_the_limit(
    storage: PatientStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RDBStorage, "record_heartbeat", flaky(10**6, REFUSED))
    storage.outage_limit_s = 0.1
    storage.record_heartbeat(1)  # no exception: a thread's traceback would tell nobody anything


def test_every_method_that_opens_a_session_is_retried() -> None:
    opening = {
        name
        for name, member in vars(RDBStorage).items()
        if inspect.isfunction(member) and "_create_scoped_session(" in inspect.getsource(member)
    }
    assert opening - {"record_heartbeat"} == set(RETRIED)  # that one is retried by hand
    assert all(getattr(PatientStorage, n) is not getattr(RDBStorage, n) for n in opening)


def test_an_outage_is_found_behind_optunas_own_error() -> None:
    try:
        try:
            raise StorageOutage("gone")
        finally:
            raise UnboundLocalError("cannot access local variable 'updated_state'")
    except UnboundLocalError as exc:
        assert str(outage_in(exc)) == "gone"
    assert outage_in(ValueError("x")) is None


def test_server_databases_ping_pooled_connections() -> None:
    assert engine_kwargs("sqlite:///optuna.db") == {}
    pg = engine_kwargs("postgresql+psycopg2://u@h/db")
    assert pg["pool_pre_ping"] and pg["connect_args"]["connect_timeout"] > 0
    assert make_storage("sqlite:///:memory:", 30.0).grace_period == 30 + 2 * 60


def down(monkeypatch: pytest.MonkeyPatch, method: str) -> None:
    """From now on this storage method finds the database gone."""
    monkeypatch.setattr(RDBStorage, method, flaky(10**6, REFUSED))


def test_an_outage_in_a_trial_passes_through_optuna_untold(
    storage: PatientStorage, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    storage.outage_limit_s = 0.1
    study = optuna.create_study(storage=storage, study_name="in-trial")

    def objective(trial: optuna.Trial) -> float:
        down(monkeypatch, "set_trial_intermediate_value")  # the epoch's report
        trial.report(1.0, 1)
        return 1.0

    with pytest.raises(StorageOutage), caplog.at_level(logging.WARNING):
        study.optimize(objective, n_trials=1, catch=(Exception,))
    monkeypatch.undo()
    assert [t.state for t in study.trials] == [TrialState.RUNNING]  # nothing told the storage
    assert "failed" not in caplog.text


def test_an_outage_while_telling_a_value_is_found_behind_optunas_error(
    storage: PatientStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.outage_limit_s = 0.1
    study = optuna.create_study(storage=storage, study_name="in-tell")

    def objective(trial: optuna.Trial) -> float:
        down(monkeypatch, "set_trial_state_values")
        down(monkeypatch, "get_trial")
        return 1.0

    with pytest.raises(BaseException) as raised:
        study.optimize(objective, n_trials=1)
    assert outage_in(raised.value) is not None  # Optuna 5.0 raises UnboundLocalError over it


def finished_child_run(study: optuna.Study, number: int, value: float) -> str:
    """A parent run for the study and a FINISHED child run tagged COMPLETE with its value."""
    client = MlflowClient()
    experiment_id = client.create_experiment(f"storage-{uuid.uuid4().hex[:8]}")
    parent = client.create_run(experiment_id).info.run_id
    study.set_user_attr("mlflow_parent_run_id", parent)
    tags = {"mlflow.parentRunId": parent, "optuna.trial_number": str(number)}
    child = client.create_run(experiment_id, tags={**tags, "optuna.trial_state": "COMPLETE"})
    run_id = child.info.run_id
    client.log_batch(run_id, metrics=[Metric("best/val_loss", value, 0, 0)])
    client.set_terminated(run_id, "FINISHED")
    return run_id


def dead_worker() -> dict[str, Any]:
    """A worker record of a process on this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return {"host": socket.gethostname(), "pid": child.pid, "start": None}


def test_the_next_worker_records_a_finished_trial_from_its_run(storage: PatientStorage) -> None:
    study = optuna.create_study(storage=storage, study_name="finished")
    trial = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2)})
    trial.set_user_attr(WORKER_ATTR, dead_worker())  # it trained, then lost the storage
    run_id = finished_child_run(study, trial.number, 0.25)
    assert fail_gone_trials(study, MlflowStudyRecorder()) == [trial.number]
    (recorded,) = study.trials
    assert recorded.state == TrialState.COMPLETE and recorded.value == 0.25
    assert recorded.user_attrs["mlflow_run_id"] == run_id


def test_a_heartbeat_failed_finished_trial_is_added_again_complete(tmp_path: Path) -> None:
    storage = PatientStorage(
        f"sqlite:///{tmp_path / 'beat.db'}",
        outage_limit_s=1.0,
        heartbeat_interval=1,
        grace_period=1,
        heartbeat_stale_trial_callback=stale_trial_callback(MlflowStudyRecorder()),
    )
    study = optuna.create_study(storage=storage, study_name="stale")
    trial = study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-4, 1e-2)})
    trial.report(0.5, 1)
    storage.record_heartbeat(trial._trial_id)
    run_id = finished_child_run(study, trial.number, 0.25)
    time.sleep(2.1)  # past the grace period: its worker (on another host, say) looks dead
    optuna.storages.fail_stale_trials(study)
    failed, added = study.trials
    assert failed.state == TrialState.FAIL
    assert added.state == TrialState.COMPLETE and added.value == 0.25
    assert added.params == failed.params and added.intermediate_values == {1: 0.5}
    assert added.user_attrs["mlflow_run_id"] == run_id
    assert added.user_attrs["recorded_from_trial"] == failed.number


def test_the_outage_limit_is_a_duration_and_an_outage_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = {}

    def fake_tune(options: Any, recorder: Any, **_: Any) -> TuneResult:
        seen["limit"] = options.storage_outage_limit_s
        if options.storage_outage_limit_s < 60:
            raise StorageOutage("Optuna storage x unreachable for 9 s")
        return TuneResult("s", "parent", {"COMPLETE": 1})

    monkeypatch.setattr("seismic_ml.tuning.study.tune", fake_tune)
    base = ["--model-type", "amag_v2"]
    assert CliRunner().invoke(tune_command, base).exit_code == 0
    assert seen["limit"] == DEFAULT_OUTAGE_LIMIT_S == 300.0
    assert CliRunner().invoke(tune_command, [*base, "--storage-outage-limit", "2m"]).exit_code == 0
    assert seen["limit"] == 120.0
    result = CliRunner().invoke(tune_command, [*base, "--storage-outage-limit", "9s"])
    assert result.exit_code == 1
    assert result.output == "Error: Optuna storage x unreachable for 9 s\n"
    result = CliRunner().invoke(tune_command, [*base, "--storage-outage-limit", "soon"])
    assert result.exit_code == 2 and "not a duration such as 900, 90s, 15m or 2h" in result.output
