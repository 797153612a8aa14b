"""SQLite store of experiment runs: one row per run, the full evidence as JSON beside a few indexed columns.

Schema (created on open, versioned with ``PRAGMA user_version``)::

    runs(run_id PK, service, experiment, outcome, started_at, ended_at, ended_ts, evidence JSON)
    index runs_service_ended(service, ended_ts)

Only what queries filter or sort on is a column; everything else (checks, every measurement,
timings, verdicts) stays in ``evidence``, the ``RunRecord`` exactly as the workflow produced it,
so the score can be recomputed from it under any version of the formula. ``ended_ts`` is
epoch seconds so ``since`` filters compare instants, not strings in mixed time zones.

``save`` is an upsert keyed by run id: the activity that records a run may be retried by
Temporal and must not create duplicates. WAL mode and a busy timeout let one worker write
while a CLI reads.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import TracebackType

from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.scoring.model import RunRecord

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id     TEXT PRIMARY KEY,
    service    TEXT NOT NULL,
    experiment TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at   TEXT NOT NULL,
    ended_ts   REAL NOT NULL,
    evidence   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_service_ended ON runs(service, ended_ts);
"""


class StoreError(OrchestratorError):
    """The run store cannot be opened or holds data this version cannot read."""


class RunStore:
    """Runs of chaos experiments, persisted in SQLite."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = str(path) if path is not None else Settings().db_path
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode: every write below opens its own explicit transaction.
            self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the run store at {self.path}: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> RunStore:
        return cls(settings.db_path)

    def _migrate(self) -> None:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store at {self.path} has schema {version}; this version reads up to {SCHEMA_VERSION}"
            )
        self._conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def save(self, run: RunRecord) -> None:
        """Insert or replace the run with this id."""
        row = (
            run.run_id,
            run.service,
            run.experiment,
            run.outcome.value,
            run.started_at.isoformat(),
            run.ended_at.isoformat(),
            run.ended_at.timestamp(),
            run.model_dump_json(),
        )
        with self._transaction():
            self._conn.execute(
                "INSERT INTO runs (run_id, service, experiment, outcome, started_at, ended_at, ended_ts, evidence)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id) DO UPDATE SET service=excluded.service, experiment=excluded.experiment,"
                " outcome=excluded.outcome, started_at=excluded.started_at, ended_at=excluded.ended_at,"
                " ended_ts=excluded.ended_ts, evidence=excluded.evidence",
                row,
            )

    def get(self, run_id: str) -> RunRecord | None:
        row = self._conn.execute("SELECT evidence FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return self._load(row[0]) if row else None

    def runs(self, service: str | None = None, since: datetime | None = None) -> list[RunRecord]:
        """Runs oldest first, optionally of one service and ended at or after ``since`` (an aware datetime)."""
        sql = "SELECT evidence FROM runs WHERE 1=1"
        params: list[object] = []
        if service is not None:
            sql += " AND service = ?"
            params.append(service)
        if since is not None:
            if since.tzinfo is None:
                raise ValueError("since must be timezone-aware")
            sql += " AND ended_ts >= ?"
            params.append(since.timestamp())
        sql += " ORDER BY ended_ts, run_id"
        return [self._load(r[0]) for r in self._conn.execute(sql, params)]

    def services(self) -> list[str]:
        return [r[0] for r in self._conn.execute("SELECT DISTINCT service FROM runs ORDER BY service")]

    def _load(self, evidence: str) -> RunRecord:
        return RunRecord.model_validate_json(evidence)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT/ROLLBACK: take the write lock up front so a busy reader makes us wait, not fail."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def iter_services(store: RunStore) -> Iterator[tuple[str, list[RunRecord]]]:
    """Each service with its runs, for reports over the whole store."""
    for service in store.services():
        yield service, store.runs(service=service)
