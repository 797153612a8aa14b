"""``orchestrator worker`` as an operator runs it: ready only once connected, metrics served, clean SIGTERM."""

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

from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(90)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def wait_until(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not reached")


def test_worker_is_ready_when_connected_serves_metrics_and_stops_on_sigterm(
    temporal_address: str, tmp_path: Path
) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "worker", "--health-port", str(port), "--log-format", "json"],
        env={**os.environ, "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address, "ORCHESTRATOR_TASK_QUEUE": "ops-test",
             "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "missing-kubeconfig")},
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(f"{base}/readyz")[0] == 200)
        assert get(f"{base}/healthz")[0] == 200
        status, metrics = get(f"{base}/metrics")
        assert status == 200 and "orchestrator_worker_ready 1" in metrics
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = [entry.get("message", "") for entry in lines]
    assert any("worker polling task queue ops-test" in m for m in messages), messages
    assert any("shutting down" in m for m in messages), messages


def test_worker_with_unreachable_temporal_exits_3_in_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "worker"],
        env={**os.environ, "ORCHESTRATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().startswith("error: cannot reach Temporal at 127.0.0.1:")
    assert "Traceback" not in proc.stderr
