"""The SQLite run store: round trip of the full evidence, filters, upsert, WAL, default path."""

from __future__ import annotations

import math
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.config import Settings
from orchestrator.scoring.model import Outcome
from orchestrator.scoring.store import RunStore, StoreError
from tests.scoring import T0, error_rate, make_run


def test_round_trip_keeps_every_piece_of_evidence(tmp_path: Path) -> None:
    run = make_run(checks=[error_rate(during=[0.01, float("nan"), 0.04])], message="breach at 12:00:20")
    with RunStore(tmp_path / "runs.db") as store:
        store.save(run)
    with RunStore(tmp_path / "runs.db") as reopened:
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


def test_get_unknown_run_is_none(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        assert store.get("nope") is None


def test_runs_filters_by_service_and_since(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
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


def test_save_is_an_upsert(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        store.save(make_run())
        store.save(make_run(outcome=Outcome.ABORTED))
        assert len(store.runs()) == 1
        loaded = store.get("run-1")
        assert loaded is not None and loaded.outcome is Outcome.ABORTED


def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "runs.db"
    RunStore(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError):
        RunStore(path)


def test_default_path_comes_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with RunStore() as store:
        store.save(make_run())
    assert (tmp_path / Settings().db_path).exists()
    settings = Settings(db_path=str(tmp_path / "elsewhere.db"))
    with RunStore.from_settings(settings) as store:
        assert store.runs() == []
    assert (tmp_path / "elsewhere.db").exists()
