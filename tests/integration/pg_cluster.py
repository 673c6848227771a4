"""A private PostgreSQL cluster a test owns: initdb, pg_ctl start on a free port, stop, start.

The binaries come from PATH or /usr/lib/postgresql/<version>/bin. initdb refuses to run as
root: as root the cluster runs as the `postgres` user, in a folder that user can reach.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import free_port

REQUIRE_ENV = "SEISMIC_ML_REQUIRE_POSTGRES"
READY_TIMEOUT_S = 60.0


def pg_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl (newest installed version), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    versions.sort(key=lambda p: int(Path(p).parent.parent.name.split(".")[0]))
    return Path(versions[-1]).parent if versions else None


def skip_or_fail(reason: str) -> None:
    """Skip the test, or fail it when SEISMIC_ML_REQUIRE_POSTGRES=1."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)")
    pytest.skip(reason)


class Cluster:
    """One PostgreSQL cluster in root, listening on 127.0.0.1 at a free port."""

    def __init__(self, root: Path, bin_dir: Path, user: str | None) -> None:
        self.root, self.bin_dir, self.user = root, bin_dir, user
        self.data, self.sockets = root / "data", root / "s"
        self.log_path = root / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        """Run a PostgreSQL tool as the cluster's user; its output in the error if it fails."""
        cmd = [str(self.bin_dir / tool), *args]
        done = subprocess.run(cmd, user=self.user, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def init(self) -> None:
        """initdb with trust auth for the postgres role (no fsync: a test's data)."""
        self.sockets.mkdir()
        if self.user:
            shutil.chown(self.sockets, self.user)
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        """pg_ctl start, then wait until a connection is accepted."""
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "start")
        self.wait_ready()

    def stop(self) -> None:
        """pg_ctl -m fast stop: every connection is cut, then nothing listens."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def wait_ready(self) -> None:
        """Poll until the cluster accepts a connection (never a fixed sleep)."""
        import psycopg2

        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                psycopg2.connect(self.url.replace("+psycopg2", ""), connect_timeout=2).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no connection: {exc}\n{self.log()}") from exc
                time.sleep(0.1)

    def log(self) -> str:
        """The server log's end (for failure messages)."""
        return self.log_path.read_text()[-3000:] if self.log_path.exists() else ""

    def running(self) -> bool:
        """Whether the postmaster of this cluster is up."""
        return (self.data / "postmaster.pid").exists()


def _owner() -> str | None:
    """None as an ordinary user; as root, `postgres` (initdb refuses root), skipping without."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        skip_or_fail("running as root and there is no `postgres` user to run initdb as")
    return "postgres"


@contextmanager
def private_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A started cluster in tmp_path (as root: a folder the postgres user can reach), removed
    after; skips (or fails, see REQUIRE_ENV) without PostgreSQL's binaries."""
    bin_dir = pg_bin_dir()
    if bin_dir is None:
        skip_or_fail("PostgreSQL's initdb is not installed (PATH or /usr/lib/postgresql/*/bin)")
    user = _owner()
    root = Path(tempfile.mkdtemp(prefix="seismic-pg-")) if user else tmp_path / "pg"
    root.mkdir(exist_ok=True)
    if user:
        shutil.chown(root, user)
    cluster = Cluster(root, bin_dir, user)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        if cluster.running():
            cluster.stop()
        if user:
            shutil.rmtree(root, ignore_errors=True)
