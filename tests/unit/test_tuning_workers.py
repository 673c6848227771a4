"""worker_alive: a trial's recorded worker process, alive or gone, on this host."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from seismic_ml.workers import is_gone, this_worker, worker_alive


def test_this_process_is_alive() -> None:
    me = this_worker()
    assert me["start"] is not None  # psutil's process creation time
    assert worker_alive(me["host"], me["pid"], me["start"])
    assert not is_gone(me)


def test_a_reaped_child_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not worker_alive(socket.gethostname(), child.pid, None)


def test_an_unreaped_child_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        record = {"host": socket.gethostname(), "pid": child.pid, "start": None}
        deadline = time.monotonic() + 30
        while not is_gone(record) and time.monotonic() < deadline:
            time.sleep(0.05)  # until it has exited (a zombie: never waited for)
        assert is_gone(record)
    finally:
        child.wait()


def test_a_wrong_start_time_is_dead() -> None:
    me = this_worker()
    assert not worker_alive(me["host"], me["pid"], me["start"] + 1)  # a reused pid


def test_a_record_in_clock_ticks_from_before_psutil_still_names_this_process() -> None:
    """Claims and trials recorded by earlier versions hold /proc's start ticks (an integer)."""
    stat = Path("/proc/self/stat").read_text()
    ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    me = this_worker()
    assert isinstance(me["start"], float)
    assert worker_alive(me["host"], me["pid"], ticks)
    assert not worker_alive(me["host"], me["pid"], ticks + 100)  # a second later: another


def test_other_hosts_and_missing_records_are_left_to_the_heartbeat() -> None:
    assert worker_alive(f"not-{socket.gethostname()}", 2**22 + 1, None)
    assert not is_gone(None) and not is_gone({"host": socket.gethostname()})
    other_container = {"host": socket.gethostname(), "pid": 2**22 + 1, "pidns": "pid:[1]"}
    assert not is_gone(other_container)


def test_the_study_creator_samples_with_the_seed_every_other_worker_apart() -> None:
    from seismic_ml.tuning.study import sampler_seed

    assert sampler_seed(7, created=True) == 7
    others = {sampler_seed(7, created=False) for _ in range(20)}
    assert len(others) == 20 and all(0 <= s < 2**32 for s in others)


def test_the_study_records_the_tracking_uri_without_its_password() -> None:
    from seismic_ml.tracking.study_runs import public_uri

    assert public_uri("http://me:secret@host:5000/x") == "http://me:***@host:5000/x"
    assert public_uri("http://host:5000") == "http://host:5000"
    assert public_uri("file:///tmp/mlruns") == "file:///tmp/mlruns"
