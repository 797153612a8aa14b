"""A throwaway PostgreSQL 15 cluster for the tests: ``initdb`` in a temporary directory, loopback only.

``postgres_cluster`` is session-scoped, so each pytest-xdist worker (a process of its own)
starts one cluster on a free port of 127.0.0.1 and no two workers share data or a port. Tests
take a fresh database each with ``cluster.create_database()`` rather than sharing one, so
they cannot see each other's rows. Durability is switched off: a test database is thrown away.

PostgreSQL refuses to run as root; as root its programs run as the ``postgres`` user (the
Debian package creates it), which needs ``runuser``. A missing installation fails the test
with the command that installs it, never a silent skip: ``make test`` installs it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures_temporal import free_port

PG_BIN = Path(os.environ.get("ORCHESTRATOR_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL_HINT = "apt-get install postgresql (PostgreSQL 15; make test installs it)"


def as_postgres(argv: list[str]) -> list[str]:
    """As root, run a PostgreSQL program as the ``postgres`` user (it refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-2000:]}")


@dataclass
class PostgresCluster:
    """``start()`` initdb + pg_ctl start on 127.0.0.1; ``stop()`` stops it and removes every file."""

    port: int = 0
    user: str = "postgres"
    directory: Path | None = None
    startup_seconds: float = 0.0
    _started: bool = False
    _databases: list[str] = field(default_factory=list)

    @staticmethod
    def missing() -> str | None:
        """Why a cluster cannot start here, or None."""
        if not (PG_BIN / "initdb").exists():
            return f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing): {INSTALL_HINT}"
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root needs runuser to start PostgreSQL as the postgres user"
        return None

    def start(self) -> PostgresCluster:
        t0 = time.monotonic()
        self.directory = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(self.directory, pg.pw_uid, pg.pw_gid)
        data = self.directory / "pgdata"
        _run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
                          "--no-sync", "--encoding=UTF8", "--locale=C"]), "initdb")
        # Another process may take the port between free_port() and the bind: try a few.
        for attempt in range(5):
            self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            try:
                _run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(self.directory / "postgres.log"),
                                  "-w", "-t", "60", "-o", options, "start"]), "pg_ctl start")
                break
            except RuntimeError:
                if attempt == 4:
                    raise
        self._started = True
        self.startup_seconds = time.monotonic() - t0
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t", name: str | None = None) -> str:
        """A new empty database (``name``, or a fresh one starting with ``prefix``); returns its URL."""
        name = name or f"{prefix}_{secrets.token_hex(6)}"
        _run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, name], "createdb")
        self._databases.append(name)
        return self.url(name)

    def log_tail(self) -> str:
        log = self.directory / "postgres.log" if self.directory else None
        return log.read_text(errors="replace")[-3000:] if log and log.exists() else ""

    def stop(self) -> None:
        if self._started and self.directory is not None:
            subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "pgdata"),
                                        "-m", "fast", "-w", "-t", "30", "stop"]),
                           capture_output=True, timeout=60, check=False)
            self._started = False
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    why = PostgresCluster.missing()
    if why:
        pytest.fail(why)
    cluster = PostgresCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres_cluster.create_database()
