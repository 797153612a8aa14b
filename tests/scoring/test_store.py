"""The run store on SQLite and on the real PostgreSQL 15: evidence round trip, filters, idempotent saves,
migrations from an empty database and from the schema the first store created, and one-line errors.

Every test taking ``store_location`` runs once per backend (``tests/scoring/conftest.py``).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from orchestrator.cli.score import score
from orchestrator.config import Settings
from orchestrator.scoring.formula import Status, score_service
from orchestrator.scoring.model import Outcome, RunRecord
from orchestrator.scoring.store import (
    DATABASE_URL_ENV,
    RunStore,
    StoreError,
    StorePathError,
    StoreUnreachableError,
    _alembic_config,
    head_revision,
    migrate,
    to_url,
)
from orchestrator.scoring.tables import metadata
from tests.fixtures_pg import PostgresCluster
from tests.fixtures_temporal import free_port
from tests.scoring import T0, error_rate, make_run

NOW = T0 + timedelta(seconds=90)

TODAYS_SQLITE_SCHEMA = """
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
PRAGMA user_version = 1;
"""
"""The schema ``RunStore`` created before the move to SQLAlchemy and Alembic, verbatim."""


def _old_row(run: RunRecord) -> tuple[object, ...]:
    return (run.run_id, run.service, run.experiment, run.outcome.value, run.started_at.isoformat(),
            run.ended_at.isoformat(), run.ended_at.timestamp(), run.model_dump_json())


def _columns(location: str) -> dict[str, set[str]]:
    engine = sa.create_engine(to_url(location))
    try:
        inspector = sa.inspect(engine)
        return {
            "columns": {c["name"] for c in inspector.get_columns("runs")},
            "indexes": {i["name"] or "" for i in inspector.get_indexes("runs")},
            "pk": set(inspector.get_pk_constraint("runs")["constrained_columns"]),
        }
    finally:
        engine.dispose()


# -- what the store keeps ----------------------------------------------------------------------------------


def test_round_trip_keeps_every_piece_of_evidence(store_location: str) -> None:
    run = make_run(checks=[error_rate(during=[0.01, float("nan"), 0.04])], message="breach at 12:00:20")
    with RunStore(store_location) as store:
        store.save(run)
    with RunStore(store_location) as reopened:
        loaded = reopened.get("run-1")
    assert loaded is not None
    # NaN != NaN, so compare the serialised form, then check the NaN itself survived as NaN
    assert loaded.model_dump_json() == run.model_dump_json()
    during = loaded.checks[0].during
    assert during[0].value == 0.01
    assert during[1].value is not None and math.isnan(during[1].value)
    assert during[1].query == "rate(error-rate[1m])"
    assert loaded.blast_radius.touched == ["checkout-a"]
    assert loaded.recovery_time == timedelta(seconds=30)
    assert loaded.links["history"].endswith("chaos-pod-kill-1")


def test_a_services_aggregate_from_the_store_carries_its_runs_coverage(store_location: str) -> None:
    # checkout: a full run now and a run 14 days old without detection or impact (60 %): weights 1 and 0.5
    # -> (1 * 1.0 + 0.5 * 0.6) / 1.5; payments' thin run is another service's and must not count.
    thin = {"detection_objective": None, "detection_time": None, "impact": None}
    with RunStore(store_location) as store:
        store.save(make_run(run_id="full", ended_at=NOW))
        store.save(make_run(run_id="thin", ended_at=NOW - timedelta(days=14), **thin))
        store.save(make_run(run_id="other", service="shop/payments", ended_at=NOW, **thin))
        checkout = score_service("shop/checkout", store.runs(service="shop/checkout"), NOW)
        payments = score_service("shop/payments", store.runs(service="shop/payments"), NOW)
        assert checkout.coverage == pytest.approx(1.3 / 1.5)
        assert checkout.status is Status.RESILIENT
        assert {r.run_id: r.coverage for r in checkout.runs} == {"full": 1.0, "thin": pytest.approx(0.6)}
        assert payments.coverage == pytest.approx(0.6)
        assert payments.status is Status.NOT_ENOUGH_EVIDENCE
        # A retried save that read the missing evidence replaces the record: the aggregate follows it.
        store.save(make_run(run_id="other", service="shop/payments", ended_at=NOW))
        again = score_service("shop/payments", store.runs(service="shop/payments"), NOW)
        assert (again.coverage, again.status) == (1.0, Status.RESILIENT)


def test_get_unknown_run_is_none(store_location: str) -> None:
    with RunStore(store_location) as store:
        assert store.get("nope") is None


def test_runs_filters_by_service_and_since(store_location: str) -> None:
    with RunStore(store_location) as store:
        store.save(make_run(run_id="old", ended_at=T0 - timedelta(days=3)))
        store.save(make_run(run_id="new", ended_at=T0 + timedelta(days=1)))
        store.save(make_run(run_id="other", service="shop/payments"))
        assert store.services() == ["shop/checkout", "shop/payments"]
        assert [r.run_id for r in store.runs()] == ["old", "other", "new"]
        assert [r.run_id for r in store.runs(service="shop/checkout")] == ["old", "new"]
        assert [r.run_id for r in store.runs(service="shop/checkout", since=T0)] == ["new"]
        assert store.runs(service="shop/none") == []
        with pytest.raises(ValueError):
            store.runs(since=T0.replace(tzinfo=None))


def test_a_retried_save_records_the_run_once(store_location: str) -> None:
    with RunStore(store_location) as store:
        store.save(make_run())
        store.save(make_run(outcome=Outcome.ABORTED))  # the retry of the same activity, later evidence
        assert store.count() == 1
        loaded = store.get("run-1")
        assert loaded is not None and loaded.outcome is Outcome.ABORTED


def test_concurrent_saves_of_one_run_leave_one_row(store_location: str) -> None:
    RunStore(store_location).close()
    errors: list[BaseException] = []

    def save() -> None:
        try:
            with RunStore(store_location) as store:
                for _ in range(5):
                    store.save(make_run())
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with RunStore(store_location) as store:
        assert store.count("run-1") == 1


def test_default_location_comes_from_settings_then_the_database_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_location: str
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with RunStore() as store:
        store.save(make_run())
    assert (tmp_path / Settings().db_path).exists()
    # ORCHESTRATOR_DATABASE_URL wins over the settings' SQLite path
    monkeypatch.setenv(DATABASE_URL_ENV, store_location if "://" in store_location else f"sqlite:///{store_location}")
    with RunStore.from_settings(Settings(db_path=str(tmp_path / "elsewhere.db"))) as store:
        assert store.runs() == []
        store.save(make_run(run_id="via-url"))
    assert not (tmp_path / "elsewhere.db").exists()
    with RunStore(store_location) as store:
        assert [r.run_id for r in store.runs()] == ["via-url"]


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "runs.db"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


# -- migrations --------------------------------------------------------------------------------------------


def test_migration_from_an_empty_database_reaches_the_tables_the_code_uses(store_location: str) -> None:
    done = migrate(store_location)
    assert done.before is None and done.after == head_revision() == "0002"
    assert done.seconds > 0
    shape = _columns(store_location)
    assert shape["columns"] == {c.name for c in metadata.tables["runs"].columns}
    assert {"runs_service_ended", "runs_workflow"} <= shape["indexes"]
    assert shape["pk"] == {"run_id"}
    again = migrate(store_location)  # a second worker start: nothing to do
    assert again.before == again.after == "0002"


def test_migration_from_todays_sqlite_store_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "orchestrator.db"
    old = [make_run(run_id="a"), make_run(run_id="b", ended_at=T0 + timedelta(days=1), workflow_id=None)]
    conn = sqlite3.connect(path)
    conn.executescript(TODAYS_SQLITE_SCHEMA)
    conn.executemany("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [_old_row(r) for r in old])
    conn.commit()
    conn.close()

    done = migrate(str(path))
    assert (done.before, done.after) == ("pre-alembic", "0002")
    with RunStore(path) as store:
        assert [r.model_dump_json() for r in store.runs()] == [r.model_dump_json() for r in old]
        store.save(make_run(run_id="c"))
        assert store.count() == 3
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT run_id, workflow_id FROM runs WHERE run_id IN ('a', 'b')").fetchall()) == {
        "a": "chaos-pod-kill-1", "b": None,
    }
    conn.close()


def test_migration_from_the_first_revision_with_rows(store_location: str) -> None:
    """The same upgrade on both backends: a store at 0001 holding a run, taken to head."""
    engine = sa.create_engine(to_url(store_location))
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0001")
        run = make_run(run_id="kept")
        conn.execute(sa.text("INSERT INTO runs VALUES (:a, :b, :c, :d, :e, :f, :g, :h)"),
                     dict(zip("abcdefgh", _old_row(run), strict=True)))
    engine.dispose()
    done = migrate(store_location)
    assert (done.before, done.after) == ("0001", "0002")
    with RunStore(store_location) as store:
        loaded = store.get("kept")
        assert loaded is not None and loaded.model_dump_json() == run.model_dump_json()


def test_workers_starting_together_migrate_once(store_location: str) -> None:
    results: list[str | None] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(migrate(store_location).before)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # exactly one found the database empty; the others waited for its lock and found it current
    assert sorted(r or "" for r in results) == ["", "0002", "0002"]


def test_a_store_from_a_newer_version_is_refused(store_location: str) -> None:
    migrate(store_location)
    engine = sa.create_engine(to_url(store_location))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer than this version knows"):
        RunStore(store_location)


# -- a store that cannot be opened -------------------------------------------------------------------------


def test_bad_sqlite_paths_are_exit_2(tmp_path: Path) -> None:
    with pytest.raises(StorePathError, match="directory /nonexistent/dir does not exist") as missing:
        RunStore("/nonexistent/dir/x.db", create=False)
    assert missing.value.exit_code == 2
    with pytest.raises(StorePathError, match="is a directory"):
        RunStore(tmp_path)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorePathError, match="not a database"):
        RunStore(garbage)
    with pytest.raises(StorePathError, match="unsupported database 'mysql'"):
        RunStore("mysql://root@127.0.0.1/x")


def test_unreachable_postgresql_is_exit_3(postgres_cluster: PostgresCluster) -> None:
    closed = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/runs"
    with pytest.raises(StoreUnreachableError) as down:
        RunStore(closed)
    assert down.value.exit_code == 3
    assert "secret" not in str(down.value) and "\n" not in str(down.value)
    with pytest.raises(StoreUnreachableError, match='database "no_such_db" does not exist'):
        RunStore(postgres_cluster.url("no_such_db"))


def test_score_cli_exit_codes_for_a_store_it_cannot_open(tmp_path: Path) -> None:
    runner = CliRunner()
    cases = [
        (["--db", "/nonexistent/dir/x.db"], 2),
        (["--db", str(tmp_path / "never-written.db")], 2),
        (["--db", str(tmp_path)], 2),
        (["--db", f"postgresql://postgres@127.0.0.1:{free_port()}/runs"], 3),
    ]
    for args, code in cases:
        result = runner.invoke(score, args)
        assert result.exit_code == code, (args, result.output)
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr


def test_worker_start_migrates_the_store_and_logs_how_long(
    store_location: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from orchestrator.worker import migrate_store

    monkeypatch.setenv(DATABASE_URL_ENV, store_location if "://" in store_location else f"sqlite:///{store_location}")
    with caplog.at_level("INFO", logger="orchestrator.worker"):
        migrate_store(Settings())
    assert "at schema 0002 (found None)" in caplog.text
    with RunStore(store_location, migrate=False) as store:  # refuses a store that is not at head
        assert store.count() == 0


def test_runs_stored_before_the_five_factors_are_rescored_from_their_evidence(tmp_path: Path) -> None:
    """A record written by the first store (no impact, detection source or affected targets in its JSON)."""
    from orchestrator.scoring.formula import score_run

    run = make_run(run_id="old", impact=None, recovery_time=timedelta(seconds=120),
                   checks=[error_rate(during=[0.01, 0.09])])
    evidence = json.loads(run.model_dump_json())
    for key in ("impact", "detection"):
        del evidence[key]
    del evidence["blast_radius"]["affected"]
    path = tmp_path / "orchestrator.db"
    conn = sqlite3.connect(path)
    conn.executescript(TODAYS_SQLITE_SCHEMA)
    conn.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                 (*_old_row(run)[:7], json.dumps(evidence)))
    conn.commit()
    conn.close()
    with RunStore(path) as store:
        loaded = store.get("old")
    assert loaded is not None and loaded.impact is None and loaded.blast_radius.affected is None
    result = score_run(loaded)
    subs = {s.name: (s.value, s.weight) for s in result.subscores}
    # detection 1, auto-recovery 0 (still over the ceiling when the fault ended), containment 1, recovery 0.5;
    # impact not measured: (0.2 + 0 + 0.2 + 0.1 * 0.5) / 0.8 = 56.25
    assert subs["impact"] == (None, None)
    assert subs["auto-recovery"] == pytest.approx((0.0, 0.375))
    assert result.score == pytest.approx(56.25)
