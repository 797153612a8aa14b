"""``orchestrator worker`` migrates the run store when it starts, before it reports ready, and a database
it cannot reach stops it with one line and exit 3 (real Temporal, real PostgreSQL 15, real SQLite)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.scoring.store import DATABASE_URL_ENV, RunStore, head_revision
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(120)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def _env(temporal_address: str, tmp_path: Path, location: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({"ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address, "ORCHESTRATOR_TASK_QUEUE": "store-test",
                "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "missing-kubeconfig"),
                "ORCHESTRATOR_STATE_DIR": str(tmp_path / "state")})
    if "://" in location:
        env[DATABASE_URL_ENV] = location
    else:
        env["ORCHESTRATOR_DB"] = location
    return env


def test_worker_start_migrates_the_store_then_polls(temporal_address: str, tmp_path: Path,
                                                    store_location: str) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "worker", "--health-port", str(port), "--log-format", "json"],
        env=_env(temporal_address, tmp_path, store_location), stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _ready(port):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    messages = [json.loads(line).get("message", "") for line in log.read_text().splitlines() if line.startswith("{")]
    migrated = [m for m in messages if m.startswith("run store ")]
    assert len(migrated) == 1 and f"at schema {head_revision()} (found None)" in migrated[0], messages
    assert messages.index(migrated[0]) < next(i for i, m in enumerate(messages) if "worker polling" in m)
    with RunStore(store_location, migrate=False) as store:  # at head already: no migration needed to read
        assert store.count() == 0


def test_worker_with_an_unreachable_database_exits_3_in_one_line(temporal_address: str, tmp_path: Path) -> None:
    url = f"postgresql://orchestrator:secret@127.0.0.1:{free_port()}/runs"
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "worker"],
                          env=_env(temporal_address, tmp_path, url), capture_output=True, text=True, timeout=90)
    assert proc.returncode == 3, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: cannot reach the run store database at postgresql://orchestrator:***@127.0.0.1:")
    assert "secret" not in proc.stderr and "Traceback" not in proc.stderr
