"""Worker metrics on prometheus_client, the stuck-rollback report, and the Temporal SDK's own metrics.

Everything runs against real parts: a real Temporal dev server, the real worker CLI in a subprocess,
and a local HTTP server standing in for the Slack webhook (it only records what it receives).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

from orchestrator import telemetry
from orchestrator.activities.canary import CanaryActivities
from orchestrator.api.requests import RollbackStuckRequest
from orchestrator.config import Settings
from orchestrator.telemetry import Metrics
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(120)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The exposition parsed by prometheus_client's own parser (so the format is checked too)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, ""


def test_each_metrics_instance_has_its_own_registry_and_keeps_todays_names() -> None:
    a, b = Metrics(), Metrics()
    telemetry.record_gate("failed", metrics=a)
    telemetry.record_janitor_run("failed", metrics=a)
    telemetry.record_janitor_run("ok", metrics=a)
    got = samples(a.render())
    assert got[("orchestrator_gate_evaluations_total", (("verdict", "failed"),))] == 1
    assert got[("orchestrator_janitor_runs_total", (("outcome", "failed"),))] == 1
    assert got[("orchestrator_janitor_runs_total", (("outcome", "ok"),))] == 1
    assert ("orchestrator_gate_evaluations_total", (("verdict", "failed"),)) not in samples(b.render())
    names = {f.name for f in text_string_to_metric_families(a.render())}
    # prometheus_client names counter families without `_total`; the samples keep it.
    assert names >= {
        "orchestrator_rollouts_started", "orchestrator_rollouts_finished", "orchestrator_rollbacks",
        "orchestrator_gate_evaluations", "orchestrator_janitor_runs", "orchestrator_active_faults",
        "orchestrator_step_duration_seconds", "orchestrator_worker_ready", "orchestrator_rollback_stuck",
    }


def test_rollback_stuck_gauge_appears_clears_and_expires_unless_renewed() -> None:
    now = [1000.0]
    m = Metrics(stuck_ttl=60, clock=lambda: now[0])
    key = ("orchestrator_rollback_stuck", (("kind", "canary"), ("workflow_id", "canary-shop-1")))
    assert telemetry.set_rollback_stuck("canary", "canary-shop-1", "reset_traffic", True, metrics=m) is True
    assert samples(m.render())[key] == 1
    # A re-report of the same step is not news (no second notification) but renews the series.
    now[0] += 50
    assert telemetry.set_rollback_stuck("canary", "canary-shop-1", "reset_traffic", True, metrics=m) is False
    now[0] += 50
    assert samples(m.render())[key] == 1
    # Another worker completed the rollback; this one hears nothing more and lets its series expire.
    now[0] += 61
    assert key not in samples(m.render())
    telemetry.set_rollback_stuck("canary", "canary-shop-1", "delete_copy", True, metrics=m)
    assert telemetry.set_rollback_stuck("canary", "canary-shop-1", "delete_copy", False, metrics=m) is True
    assert key not in samples(m.render())


class _Webhook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Webhook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/secret", received
    finally:
        server.shutdown()
        server.server_close()


@workflow.defn(sandboxed=False)
class StuckThenRecovered:
    """Calls the real activity the way a compensation loop does: stuck twice, then recovered."""

    @workflow.run
    async def run(self, wf_id: str) -> None:
        for stuck in (True, True, False):
            await workflow.execute_activity(
                "notify.rollback_stuck",
                RollbackStuckRequest(kind="canary", workflow_id=wf_id, name="checkout", step="reset_traffic",
                                     error="RouteTarget total_replicas must be >= 1", stuck=stuck),
                start_to_close_timeout=timedelta(seconds=20),
            )


async def test_rollback_stuck_activity_sets_the_gauge_and_notifies_once_per_change(
    temporal_client: Client, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = webhook
    settings = Settings.from_env(notify_webhook=url)
    activities = CanaryActivities(settings)
    fresh = Metrics()
    telemetry.set_default_metrics(fresh)
    queue = f"stuck-{uuid.uuid4()}"
    try:
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            async with Worker(temporal_client, task_queue=queue, workflows=[StuckThenRecovered],
                              activities=[activities.notify_rollback_stuck], activity_executor=pool):
                handle = await temporal_client.start_workflow(
                    StuckThenRecovered.run, "canary-checkout-7", id=f"wf-{uuid.uuid4()}", task_queue=queue)
                await handle.result()
    finally:
        telemetry.set_default_metrics(None)
    texts = [m["text"] for m in received]
    assert len(received) == 2, texts
    assert "rollback stuck" in texts[0] and "reset_traffic" in texts[0]
    assert "rollback recovered" in texts[1]
    assert ("orchestrator_rollback_stuck", (("kind", "canary"), ("workflow_id", "canary-checkout-7"))) \
        not in samples(fresh.render())


def test_worker_cli_serves_sdk_metrics_on_a_second_port(temporal_address: str, tmp_path: Path) -> None:
    health, sdk = free_port(), free_port()
    queue = f"sdk-metrics-{uuid.uuid4()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "worker", "--health-port", str(health),
         "--sdk-metrics-port", str(sdk)],
        env={**os.environ, "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address, "ORCHESTRATOR_TASK_QUEUE": queue,
             "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "missing-kubeconfig")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 40
        while get(f"http://127.0.0.1:{health}/readyz")[0] != 200:
            assert proc.poll() is None, "worker exited"
            assert time.monotonic() < deadline, "worker never became ready"
            time.sleep(0.2)
        # A workflow type this worker does not know: its workflow task is scheduled, picked up and
        # fails, exactly the path a nondeterminism error takes (a retried workflow-task failure).
        import asyncio

        async def start() -> None:
            client = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
            handle = await client.start_workflow("NoSuchWorkflow", id=f"wf-{uuid.uuid4()}", task_queue=queue,
                                                 execution_timeout=timedelta(seconds=30))
            try:
                end = time.monotonic() + 30
                wanted = ("temporal_workflow_task_schedule_to_start_latency",
                          "temporal_workflow_task_execution_failed")
                while time.monotonic() < end:
                    text = get(f"http://127.0.0.1:{sdk}/metrics")[1]
                    if all(w in text for w in wanted):
                        break
                    await asyncio.sleep(0.5)
                for w in wanted:
                    assert w in text, text[:2000]
                got = samples(text)
                failed = [v for (name, labels), v in got.items()
                          if name.startswith("temporal_workflow_task_execution_failed") and dict(labels).get(
                              "task_queue") == queue]
                assert failed and max(failed) >= 1
                assert any(name.startswith("temporal_num_pollers") for name, _ in got)
                # The orchestrator's own endpoint stays separate and unchanged.
                assert "orchestrator_worker_ready 1.0" in get(f"http://127.0.0.1:{health}/metrics")[1]
            finally:
                await handle.terminate("test over")

        asyncio.run(start())
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_notify_outcome_records_time_to_rollback() -> None:
    from orchestrator.api.requests import NotifyRequest

    fresh = Metrics()
    telemetry.set_default_metrics(fresh)
    try:
        CanaryActivities(Settings.from_env()).notify(NotifyRequest(
            kind="canary", name="checkout", outcome="rolled-back", reason_kind="gate", time_to_rollback_seconds=4.2))
    finally:
        telemetry.set_default_metrics(None)
    got = samples(fresh.render())
    assert got[("orchestrator_time_to_rollback_seconds_bucket", (("kind", "canary"), ("le", "5.0")))] == 1
    assert got[("orchestrator_time_to_rollback_seconds_bucket", (("kind", "canary"), ("le", "2.0")))] == 0
    assert got[("orchestrator_rollbacks_total", (("kind", "canary"), ("reason", "gate")))] == 1


def test_the_worker_registers_notify_rollback_stuck_beside_notify_outcome() -> None:
    from temporalio.activity import _Definition

    from orchestrator.worker import collect

    _, activities = collect(Settings.from_env())
    names = {d.name for a in activities if (d := _Definition.from_callable(a)) is not None}
    assert {"notify.outcome", "notify.rollback_stuck"} <= names


@pytest.mark.parametrize("option", ["--health-port", "--sdk-metrics-port"])
def test_a_metrics_port_in_use_is_one_line_and_exit_2(option: str, temporal_address: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", "worker", option, str(port)],
            env={**os.environ, "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address,
                 "ORCHESTRATOR_TASK_QUEUE": f"busy-{uuid.uuid4()}",
                 "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "missing")},
            capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert option in proc.stderr and "in use" in proc.stderr
