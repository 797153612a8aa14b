"""Worker operations against real processes: health endpoints, metrics scraped by a real Prometheus,
structured logs inside a real Temporal workflow and activity, and webhook notifications.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from orchestrator import telemetry
from orchestrator.health import HealthServer, ReadyFlag, start_health
from orchestrator.logs import configure_logging
from orchestrator.notify import Notifier, Outcome, send_outcome, slack_payload
from orchestrator.telemetry import Metrics
from tests.fixtures_temporal import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# --- health endpoints --------------------------------------------------------------------------

@pytest.fixture
def health() -> Iterator[tuple[HealthServer, ReadyFlag, Metrics]]:
    metrics = Metrics()
    ready = ReadyFlag(metrics)
    server = start_health(0, ready, metrics=metrics)
    try:
        yield server, ready, metrics
    finally:
        server.stop()


def test_healthz_always_readyz_only_when_ready(health: tuple[HealthServer, ReadyFlag, Metrics]) -> None:
    server, ready, _ = health
    assert server.host == "127.0.0.1" and server.port > 0
    assert get(f"{server.url}/healthz") == (200, "ok\n")
    assert get(f"{server.url}/readyz")[0] == 503
    ready.set()
    assert get(f"{server.url}/readyz") == (200, "ready\n")
    assert get(f"{server.url}/healthz")[0] == 200
    ready.clear()  # what the worker does first on SIGTERM
    assert get(f"{server.url}/readyz")[0] == 503
    assert get(f"{server.url}/nope")[0] == 404


def test_metrics_endpoint_reflects_readiness(health: tuple[HealthServer, ReadyFlag, Metrics]) -> None:
    server, ready, _ = health
    status, body = get(f"{server.url}/metrics")
    assert status == 200 and "orchestrator_worker_ready 0.0\n" in body
    ready.set()
    assert "orchestrator_worker_ready 1.0\n" in get(f"{server.url}/metrics")[1]


def test_failing_readiness_check_means_not_ready() -> None:
    def broken() -> bool:
        raise RuntimeError("lost the client")

    with HealthServer("127.0.0.1", 0, broken, Metrics()) as server:
        assert get(f"{server.url}/readyz")[0] == 503
        assert get(f"{server.url}/healthz")[0] == 200
        assert "orchestrator_worker_ready 0.0\n" in get(f"{server.url}/metrics")[1]


def test_stopped_server_releases_its_port() -> None:
    server = start_health(0, lambda: True, metrics=Metrics())
    port = server.port
    server.stop()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


# --- exposition format -------------------------------------------------------------------------

def test_exposition_text_format() -> None:
    m = Metrics()
    telemetry.record_rollout_started("canary", metrics=m)
    telemetry.record_rollout_finished("canary", "rolled_back", metrics=m)
    telemetry.record_rollback("canary", 'gate "error-rate" failed\n', metrics=m)
    telemetry.observe_step("canary", "hold", 0.3, metrics=m)
    telemetry.observe_step("canary", "hold", 7000, metrics=m)
    telemetry.fault_injected(metrics=m)
    telemetry.fault_removed(metrics=m)
    telemetry.fault_removed(metrics=m)  # a retried removal must not go negative
    text = m.render()
    assert "# TYPE orchestrator_rollouts_started_total counter\n" in text
    assert 'orchestrator_rollouts_started_total{kind="canary"} 1.0\n' in text
    assert 'orchestrator_rollouts_finished_total{kind="canary",outcome="rolled_back"} 1.0\n' in text
    assert 'orchestrator_rollbacks_total{kind="canary",reason="gate \\"error-rate\\" failed\\n"} 1.0\n' in text
    assert "orchestrator_active_faults 0.0\n" in text
    assert "# TYPE orchestrator_step_duration_seconds histogram\n" in text
    assert 'orchestrator_step_duration_seconds_bucket{kind="canary",le="0.1",step="hold"} 0.0\n' in text
    assert 'orchestrator_step_duration_seconds_bucket{kind="canary",le="0.5",step="hold"} 1.0\n' in text
    assert 'orchestrator_step_duration_seconds_bucket{kind="canary",le="3600.0",step="hold"} 1.0\n' in text
    assert 'orchestrator_step_duration_seconds_bucket{kind="canary",le="+Inf",step="hold"} 2.0\n' in text
    assert 'orchestrator_step_duration_seconds_count{kind="canary",step="hold"} 2.0\n' in text
    assert 'orchestrator_step_duration_seconds_sum{kind="canary",step="hold"} 7000.3\n' in text
    with pytest.raises(ValueError, match="takes labels"):
        m.gate_evaluations.inc(kind="canary")


def test_counters_are_thread_safe() -> None:
    m = Metrics()

    def hammer() -> None:
        for _ in range(2000):
            telemetry.record_gate("successful", metrics=m)
            telemetry.observe_step("chaos", "inject", 1.0, metrics=m)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.gate_evaluations.value(verdict="successful") == 16000
    assert m.step_duration.count(kind="chaos", step="inject") == 16000


def test_module_functions_use_the_replaceable_default() -> None:
    fresh = Metrics()
    telemetry.set_default_metrics(fresh)
    try:
        telemetry.record_gate("inconclusive")
        telemetry.set_worker_ready(True)
        assert fresh.gate_evaluations.value(verdict="inconclusive") == 1
        assert "orchestrator_worker_ready 1.0\n" in telemetry.render()
    finally:
        telemetry.set_default_metrics(None)
    assert telemetry.default_metrics() is not fresh


# --- scraped by a real Prometheus --------------------------------------------------------------

def _prom_query(base: str, query: str) -> list[dict[str, Any]]:
    status, body = get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    if status != 200:
        return []
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def _value(base: str, query: str) -> float | None:
    result = _prom_query(base, query)
    return float(result[0]["value"][1]) if result else None


@pytest.fixture
def prometheus(tmp_path: Path, health: tuple[HealthServer, ReadyFlag, Metrics]) -> Iterator[str]:
    if not Path(PROMETHEUS).exists():
        pytest.fail("the prometheus binary is missing (Debian package `prometheus`)")
    server = health[0]
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: orchestrator\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
    )
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if get(f"{base}/-/ready")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "prometheus exited at startup"
            time.sleep(0.2)
        else:
            pytest.fail("prometheus did not become ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_real_prometheus_scrapes_the_worker_metrics(
    health: tuple[HealthServer, ReadyFlag, Metrics], prometheus: str
) -> None:
    _, ready, metrics = health
    ready.set()
    for verdict in ("failed", "failed", "failed", "successful"):
        telemetry.record_gate(verdict, metrics=metrics)
    telemetry.record_rollout_started("flag_ramp", metrics=metrics)
    telemetry.observe_step("flag_ramp", "25%", 12.0, metrics=metrics)
    telemetry.fault_injected(metrics=metrics)

    wanted = {
        'up{job="orchestrator"}': 1.0,  # the scrape parsed the exposition
        'orchestrator_worker_ready{job="orchestrator"}': 1.0,
        'orchestrator_gate_evaluations_total{verdict="failed"}': 3.0,
        'orchestrator_gate_evaluations_total{verdict="successful"}': 1.0,
        'orchestrator_rollouts_started_total{kind="flag_ramp"}': 1.0,
        'orchestrator_step_duration_seconds_count{kind="flag_ramp",step="25%"}': 1.0,
        'orchestrator_step_duration_seconds_bucket{kind="flag_ramp",le="30.0"}': 1.0,
        "orchestrator_active_faults": 1.0,
    }
    seen: dict[str, float | None] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seen = {q: _value(prometheus, q) for q in wanted}
        if seen == wanted:
            break
        time.sleep(0.5)
    assert seen == wanted

    # Readiness going away shows up in Prometheus as well.
    ready.clear()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _value(prometheus, "orchestrator_worker_ready") != 0.0:
        time.sleep(0.5)
    assert _value(prometheus, "orchestrator_worker_ready") == 0.0


# --- structured logs inside Temporal -----------------------------------------------------------

@activity.defn(name="ops_test_log_activity")
async def log_activity(target: str) -> str:
    logging.getLogger("orchestrator.test").info("scaling %s", target, extra={"replicas": 3})
    activity.logger.info("via the temporal activity logger")
    return target


@workflow.defn(name="OpsTestLogWorkflow")
class LogWorkflow:
    @workflow.run
    async def run(self, target: str) -> str:
        workflow.logger.info("workflow starting")
        return await workflow.execute_activity(
            log_activity, target, start_to_close_timeout=timedelta(seconds=10)
        )


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    old_level = root.level
    handler = configure_logging("json", "INFO", stream=stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_json_logs_carry_the_workflow_and_activity(
    temporal_client: Client, task_queue: str, json_logs: io.StringIO
) -> None:
    workflow_id = f"log-{uuid.uuid4().hex[:8]}"
    # The workflow runs in the real sandbox; this test module (HTTP servers and all) is passed
    # through rather than re-imported inside it.
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("tests.test_worker_ops")
    )
    async with Worker(temporal_client, task_queue=task_queue, workflows=[LogWorkflow],
                      activities=[log_activity], workflow_runner=runner):
        handle = await temporal_client.start_workflow(
            LogWorkflow.run, "shop/checkout", id=workflow_id, task_queue=task_queue
        )
        assert await handle.result() == "shop/checkout"
        run_id = handle.result_run_id

    records = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert records, "nothing was logged"
    by_message = {r["message"]: r for r in records}

    scaled = by_message["scaling shop/checkout"]
    assert scaled["workflow_id"] == workflow_id and scaled["run_id"] == run_id
    assert scaled["activity"] == "ops_test_log_activity" and scaled["attempt"] == 1
    assert scaled["replicas"] == 3 and scaled["level"] == "INFO" and scaled["logger"] == "orchestrator.test"

    via_temporal = by_message["via the temporal activity logger"]  # no context appended to the text
    assert via_temporal["workflow_id"] == workflow_id and via_temporal["activity"] == "ops_test_log_activity"

    started = by_message["workflow starting"]
    assert started["workflow_id"] == workflow_id and started["workflow_type"] == "OpsTestLogWorkflow"
    assert "activity" not in started


def test_json_logs_outside_temporal_and_exceptions(json_logs: io.StringIO) -> None:
    log = logging.getLogger("orchestrator.cli")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("could not start")
    (record,) = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    assert record["message"] == "could not start" and record["level"] == "ERROR"
    assert "workflow_id" not in record and "RuntimeError: boom" in record["exc_info"]


# --- notifications -----------------------------------------------------------------------------

class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    received: list[tuple[str, dict[str, Any]]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret", received
    finally:
        server.shutdown()
        server.server_close()


ROLLED_BACK = Outcome(
    kind="canary", name="checkout", outcome="rolled_back", target="shop/checkout",
    reason="gate error-rate failed 3 times (0.07 > 0.01)", workflow_id="canary-shop-checkout",
    details={"weight": "25", "image": "app:v2 <beta>"},
)


def test_notifier_posts_slack_compatible_json(webhook: tuple[str, list[tuple[str, dict[str, Any]]]]) -> None:
    url, received = webhook
    assert Notifier(url, timeout=5).notify(ROLLED_BACK) is True
    ((content_type, payload),) = received
    assert content_type == "application/json"
    assert payload == slack_payload(ROLLED_BACK)
    assert payload["text"].startswith(":rewind: Canary rollout checkout: rolled back")
    assert "0.07 &gt; 0.01" in payload["text"]  # Slack's control characters are escaped
    header, fields = payload["blocks"][0], payload["blocks"][1]
    assert header == {"type": "header", "text": {"type": "plain_text", "text": "Canary rollout checkout: rolled_back"}}
    assert {"type": "mrkdwn", "text": "*Target*\nshop/checkout"} in fields["fields"]
    assert {"type": "mrkdwn", "text": "*Workflow*\n`canary-shop-checkout`"} in fields["fields"]
    assert "image: app:v2 &lt;beta&gt;" in payload["blocks"][-1]["elements"][0]["text"]

    promoted = Outcome(kind="flag_ramp", name="new-checkout", outcome="completed")
    assert send_outcome(url, promoted) is True
    assert received[-1][1]["text"] == ":white_check_mark: Flag ramp new-checkout: completed"


def test_dead_webhook_neither_raises_nor_blocks(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{free_port()}/services/T000/B000/secret"
    with caplog.at_level(logging.WARNING, logger="orchestrator.notify"):
        assert Notifier(dead, timeout=2).notify(ROLLED_BACK) is False
        assert send_outcome(dead, ROLLED_BACK, timeout=2) is False
    assert "failed" in caplog.text and "secret" not in caplog.text  # the URL's secret path is never logged


def test_silent_webhook_is_abandoned_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    # Accepts the connection but never answers: only the timeout can end the call.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
        with caplog.at_level(logging.WARNING, logger="orchestrator.notify"):
            assert Notifier(url, timeout=0.5).notify(ROLLED_BACK) is False
    assert "did not answer" in caplog.text or "failed" in caplog.text


def test_no_webhook_is_a_no_op() -> None:
    assert send_outcome(None, ROLLED_BACK) is False
    assert send_outcome("file:///etc/passwd", ROLLED_BACK) is False  # never anything but HTTP(S)
