"""The run store: SQLite for one machine, PostgreSQL for a cluster, through SQLAlchemy Core.

Where::

    --db / RunStore(location)  >  ORCHESTRATOR_DATABASE_URL  >  ORCHESTRATOR_DB (a SQLite path)

A location with ``://`` is a database URL (``postgresql://user@host/db`` uses psycopg 3;
``sqlite:///path`` is SQLite); anything else is a SQLite file path. SQLite needs no setup and
suits one worker and a CLI on one machine; several worker pods must share PostgreSQL, or each
pod would keep (and lose) its own history.

Schema: ``tables.runs``, reached through the Alembic migrations in ``migrations/``. Opening a
store migrates it to the newest revision (the worker does it at start and logs the time), so a
CLI and a worker never disagree on the shape. A SQLite file made before the move to Alembic
(the ``runs`` table, no ``alembic_version``) is stamped at revision 0001, whose shape it has,
and upgraded from there. Migrations hold a lock while they run: PostgreSQL's transaction-level
advisory lock, SQLite's write lock (``BEGIN IMMEDIATE``), so two pods starting together
migrate once.

``save`` is an upsert keyed by the run id (the primary key): Temporal may retry the activity
that records a run, and the retry overwrites the same row instead of adding one.

Errors are one line and say which kind: ``StorePathError`` (exit 2: a path or URL that cannot
name a store, e.g. a directory that does not exist, a port that is not a number, a password with an
unencoded ``@``) or ``StoreUnreachableError`` (exit 3: the database server does not answer or
refuses the connection). A URL is shown only through ``orchestrator.redact``: its password and
secret parameters (``?password=``) are masked, and remembered so the driver's messages mask them too.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from orchestrator.config import Settings, host_problem
from orchestrator.errors import OrchestratorError, UnreachableError
from orchestrator.redact import redact, remember_url
from orchestrator.scoring.model import RunRecord
from orchestrator.scoring.tables import runs

if TYPE_CHECKING:
    from alembic.config import Config

DATABASE_URL_ENV = "ORCHESTRATOR_DATABASE_URL"
BASELINE_REVISION = "0001"
"""The revision whose shape the pre-Alembic SQLite store has."""
_MIGRATION_LOCK = 7_210_425_331
"""PostgreSQL advisory lock key taken while migrating (any constant the project owns)."""
_CONNECT_TIMEOUT = 5

# Alembic narrates every plugin (at import) and step at INFO; the worker logs one line per migration
# instead. Hence the level set here and Alembic imported inside the functions that use it.
logging.getLogger("alembic").setLevel(logging.WARNING)


class StoreError(OrchestratorError):
    """The run store cannot be opened or holds data this version cannot read."""


class StorePathError(StoreError):
    """The location cannot name a store: a missing directory, a directory as file, a bad URL (exit 2)."""

    exit_code = 2


class StoreUnreachableError(StoreError, UnreachableError):
    """The database server does not answer or refuses us (exit 3); retrying may help."""

    def __init__(self, address: str, reason: str) -> None:
        UnreachableError.__init__(self, "the run store database", address, reason)


@dataclass(frozen=True)
class Migration:
    """What ``migrate`` did, for the worker's log and the tests."""

    location: str
    before: str | None
    """Revision found (None: empty database); ``"pre-alembic"`` for a store made before migrations."""
    after: str
    seconds: float


def location_from(settings: Settings | None = None, location: str | os.PathLike[str] | None = None) -> str:
    """The store's location: the argument, else ORCHESTRATOR_DATABASE_URL, else the settings' SQLite path."""
    if location is not None:
        return os.fspath(location)
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        return url
    return (settings or Settings()).db_path


def to_url(location: str) -> URL:
    """A SQLAlchemy URL for ``location``; PostgreSQL URLs are pinned to the psycopg 3 driver."""
    # Before anything is said about it: a mistyped URL ("postgresql:/u:pw@h") is read as a path below.
    remember_url(location)
    if "://" not in location:
        if location == ":memory:":
            return URL.create("sqlite", database=":memory:")
        return URL.create("sqlite", database=str(Path(location).expanduser()))
    try:
        url = make_url(location)
    except ArgumentError:
        raise StorePathError(f"not a database URL: {_redact(location)}") from None
    except ValueError:
        # SQLAlchemy reads the port with int(): "h:notaport", "[::1" end here.
        raise StorePathError(f"not a database URL (bad host or port): {_redact(location)}") from None
    problem = host_problem(url.host) if url.host else None
    if problem:
        # Refused here, before the driver would look the name up.
        raise StorePathError(f"{_redact(location)} {problem}")
    if url.host and "@" in url.host:
        # The password held an "@" the driver would take as the host's: refuse before any lookup.
        raise StorePathError(
            f"the password in {_redact(location)} contains an unencoded '@': write it as %40"
        )
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url.set(drivername="sqlite")
    raise StorePathError(f"unsupported database {backend!r} in {_redact(location)} (use sqlite or postgresql)")


@functools.cache
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


class RunStore:
    """Runs of chaos experiments, in SQLite or PostgreSQL."""

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        migrate: bool = True,
    ) -> None:
        """Open (and by default migrate) the store at ``location`` (see the module docstring).

        ``create=False`` refuses a SQLite file that does not exist yet, for commands that only read.
        """
        raw = location_from(None, location)
        self.url = to_url(raw)
        self.path = _display(self.url)
        self.migration: Migration | None = None
        try:
            self._engine = _engine(self.url, create=create, display=self.path)
        except ArgumentError as exc:
            # Connection arguments from the URL's query (``?port=abc``) are checked when the engine is made.
            raise StorePathError(f"cannot open the run store at {self.path}: {_first_line(exc)}") from None
        try:
            if migrate:
                self.migration = _upgrade(self._engine, self.path)
            else:
                _check_revision(self._engine, self.path)
        except BaseException:
            self._engine.dispose()
            raise

    @classmethod
    def from_settings(cls, settings: Settings) -> RunStore:
        return cls(location_from(settings))

    @property
    def backend(self) -> str:
        return self.url.get_backend_name()

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def save(self, run: RunRecord) -> None:
        """Insert the run, or replace the row with its id (a retried save never adds a second row)."""
        row: dict[str, Any] = {
            "run_id": run.run_id,
            "service": run.service,
            "experiment": run.experiment,
            "outcome": run.outcome.value,
            "started_at": run.started_at.isoformat(),
            "ended_at": run.ended_at.isoformat(),
            "ended_ts": run.ended_at.timestamp(),
            "evidence": run.model_dump_json(),
            "workflow_id": run.workflow_id,
            "recorded_at": datetime.now(UTC).timestamp(),
        }
        insert = pg_insert if self.backend == "postgresql" else sqlite_insert
        stmt = insert(runs).values(row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[runs.c.run_id], set_={k: stmt.excluded[k] for k in row if k != "run_id"}
        )
        with self._errors(), self._engine.begin() as conn:
            conn.execute(stmt)

    def get(self, run_id: str) -> RunRecord | None:
        with self._errors(), self._engine.connect() as conn:
            evidence = conn.execute(select(runs.c.evidence).where(runs.c.run_id == run_id)).scalar()
        return self._load(evidence) if evidence is not None else None

    def runs(self, service: str | None = None, since: datetime | None = None) -> list[RunRecord]:
        """Runs oldest first, optionally of one service and ended at or after ``since`` (an aware datetime)."""
        query = select(runs.c.evidence)
        if service is not None:
            query = query.where(runs.c.service == service)
        if since is not None:
            if since.tzinfo is None:
                raise ValueError("since must be timezone-aware")
            query = query.where(runs.c.ended_ts >= since.timestamp())
        query = query.order_by(runs.c.ended_ts, runs.c.run_id)
        with self._errors(), self._engine.connect() as conn:
            rows = conn.execute(query).scalars().all()
        return [self._load(r) for r in rows]

    def services(self) -> list[str]:
        with self._errors(), self._engine.connect() as conn:
            return list(conn.execute(select(runs.c.service).distinct().order_by(runs.c.service)).scalars())

    def count(self, run_id: str | None = None) -> int:
        """Rows stored (of one run id): what an idempotency test counts."""
        query = select(runs.c.run_id)
        if run_id is not None:
            query = query.where(runs.c.run_id == run_id)
        with self._errors(), self._engine.connect() as conn:
            return len(conn.execute(query).all())

    def _load(self, evidence: str) -> RunRecord:
        return RunRecord.model_validate_json(evidence)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as exc:
            raise _classify(exc, self.url, self.path) from exc


def migrate(location: str | os.PathLike[str] | None = None, settings: Settings | None = None) -> Migration:
    """Bring the store to the newest schema and say from where and how long it took (the worker's start)."""
    with RunStore(location_from(settings, location)) as store:
        assert store.migration is not None
        return store.migration


def iter_services(store: RunStore) -> Iterator[tuple[str, list[RunRecord]]]:
    """Each service with its runs, for reports over the whole store."""
    for service in store.services():
        yield service, store.runs(service=service)


# -- engine and migrations ---------------------------------------------------------------------------------


def _engine(url: URL, *, create: bool, display: str) -> Engine:
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, create=create, display=display)
    return create_engine(url, connect_args={"connect_timeout": _CONNECT_TIMEOUT}, pool_pre_ping=True)


def _check_sqlite_path(path: Path, *, create: bool, display: str) -> None:
    if path.is_dir():
        raise StorePathError(f"cannot open the run store at {display}: it is a directory")
    if not path.parent.is_dir():
        parent = _shown(str(path.parent))
        if not create:
            raise StorePathError(f"cannot open the run store at {display}: directory {parent} does not exist")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorePathError(f"cannot create the run store's directory {parent}: {exc.strerror}") from exc
    if not create and not path.exists():
        raise StorePathError(f"no run store at {display} (nothing has been recorded there)")


def _sqlite_engine(url: URL, *, create: bool, display: str) -> Engine:
    database = url.database or ""
    memory = database in ("", ":memory:")
    if not memory:
        try:
            _check_sqlite_path(Path(database), create=create, display=display)
        except OSError as exc:
            # A name too long, a component that is not a directory: the path is the problem (exit 2).
            raise StorePathError(f"cannot open the run store at {display}: {exc.strerror}") from None
    engine = create_engine(
        url,
        connect_args={"timeout": 30.0, "check_same_thread": False},
        **({"poolclass": StaticPool} if memory else {}),
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" below emit BEGIN itself (the driver's own handling skips DDL).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Take the write lock up front: a busy writer makes us wait (busy_timeout), never fail mid-way.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "orchestrator.scoring:migrations")
    config.attributes["connection"] = connection
    return config


def _current(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(engine: Engine, display: str) -> Migration:
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    t0 = time.perf_counter()
    try:
        # Every save opens the store: when it is current, one read of its revision is all it costs.
        with engine.connect() as conn:
            current = _current(conn)
        if current == head_revision():
            return Migration(location=display, before=current, after=current, seconds=time.perf_counter() - t0)
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Two pods starting together: the second waits here, then finds the schema current.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            before = _current(conn)
            config = _alembic_config(conn)
            if before is None and inspect(conn).has_table("runs"):
                command.stamp(config, BASELINE_REVISION)
                before = "pre-alembic"
            known = {s.revision for s in ScriptDirectory.from_config(config).walk_revisions()}
            if before not in (None, "pre-alembic") and before not in known:
                raise StoreError(
                    f"the run store at {display} has schema revision {before}, newer than this version knows "
                    f"(up to {head_revision()}): upgrade the orchestrator"
                )
            command.upgrade(config, "head")
            after = _current(conn)
    except SQLAlchemyError as exc:
        raise _classify(exc, engine.url, display) from exc
    except CommandError as exc:
        raise StoreError(f"cannot migrate the run store at {display}: {exc}") from exc
    assert after is not None
    return Migration(location=display, before=before, after=after, seconds=time.perf_counter() - t0)


def _check_revision(engine: Engine, display: str) -> None:
    try:
        with engine.connect() as conn:
            current = _current(conn)
    except SQLAlchemyError as exc:
        raise _classify(exc, engine.url, display) from exc
    if current != head_revision():
        raise StoreError(f"the run store at {display} is at schema {current}, not {head_revision()}: migrate it")


def _classify(exc: SQLAlchemyError, url: URL, display: str) -> StoreError:
    reason = _first_line(exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc)
    if isinstance(exc, NoSuchModuleError | ArgumentError):
        return StorePathError(f"cannot open the run store at {display}: {reason}")
    if url.get_backend_name() == "sqlite":
        if "locked" in reason or "busy" in reason:
            return StoreUnreachableError(display, reason)
        # unable to open the file, not a database, read-only directory: the path is the problem.
        return StorePathError(f"cannot open the run store at {display}: {reason}")
    if _is_bad_option(exc):
        return StorePathError(f"cannot open the run store at {display}: {reason}")
    if (isinstance(exc, DBAPIError) and exc.connection_invalidated) or _is_connect_error(exc):
        return StoreUnreachableError(display, reason)
    return StoreError(f"run store at {display}: {reason}")


_BAD_OPTION = re.compile(r"invalid \S+ value|invalid URI|invalid connection option|invalid dsn|missing \"=\"")


def _is_bad_option(exc: SQLAlchemyError) -> bool:
    """A URL whose options the driver refuses before connecting (``?sslmode=bogus``): the input, not the server."""
    import psycopg

    orig = exc.orig if isinstance(exc, DBAPIError) else None
    if isinstance(orig, psycopg.ProgrammingError | psycopg.InterfaceError):
        return True
    return isinstance(orig, psycopg.OperationalError) and bool(_BAD_OPTION.search(str(orig)))


def _is_connect_error(exc: SQLAlchemyError) -> bool:
    import psycopg

    orig = exc.orig if isinstance(exc, DBAPIError) else None
    return isinstance(orig, psycopg.OperationalError)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _shown(text: str) -> str:
    """``text`` on one line: a path may hold a newline, an error line may not."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _display(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return _shown(url.database or ":memory:")
    return redact(url.render_as_string(hide_password=True).replace("postgresql+psycopg://", "postgresql://"))


def _redact(location: str) -> str:
    return redact(location)


__all__ = [
    "DATABASE_URL_ENV",
    "Migration",
    "RunStore",
    "StoreError",
    "StorePathError",
    "StoreUnreachableError",
    "head_revision",
    "iter_services",
    "location_from",
    "migrate",
    "to_url",
]
