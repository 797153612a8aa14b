"""No secret printed, on any output path: a marker secret set in every secret-bearing setting never comes back.

Each case puts a marker in one secret (a URL's userinfo or ``?token=``, a bearer token, a password, an API key,
a database URL, a webhook, the Unleash token) and drives an error path -- unreachable (127.0.0.1, a closed
port), refused (a server on 127.0.0.1 that echoes the credentials it was sent), malformed, a bad TLS file --
through the real CLI, then looks for the marker in stdout and stderr. Markers differ per case, so a secret
remembered by one in-process case cannot hide a leak in another. A real ``orchestrator worker`` process,
configured with markers, runs the Prometheus (refused and unreachable) and notification paths for a workflow
on the real Temporal server; the marker must be absent from its logs, the workflow's history, its result,
its status query and every notification the webhook received.
"""

from __future__ import annotations

import asyncio
import itertools
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
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ActivityError
from temporalio.worker import Worker

from orchestrator.redact import redact
from tests.fixtures_temporal import free_port
from tests.frontdoor.helpers import REPO, Outcome, invoke, run_process

pytestmark = pytest.mark.timeout(180)

SPEC = str(REPO / "examples" / "checkout-canary.yaml")
REPLAY = ["replay", SPEC, "--from", "2026-01-01T00:00:00Z", "--to", "2026-01-01T00:01:00Z"]
_serial = itertools.count()


def marker() -> str:
    """A fresh secret: letters and digits only, so it needs no encoding in a URL."""
    return f"MK{next(_serial)}x{uuid.uuid4().hex[:12]}SECRET"


def closed_port() -> str:
    # Nothing listens on port 1 of 127.0.0.1 (binding it needs root, and nothing here does).
    return "127.0.0.1:1"


class _Echo(BaseHTTPRequestHandler):
    """A dependency that refuses, quoting back everything it was sent: path, query and headers."""

    status = 401

    def do_GET(self) -> None:
        echoed = f"{self.path} {self.headers.get('Authorization')} {dict(self.headers)}"
        body = json.dumps({"status": "error", "errorType": "bad_data", "error": echoed}).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Echo", (_Echo,), {}))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _where(server: ThreadingHTTPServer) -> str:
    return f"127.0.0.1:{server.server_address[1]}"


@dataclass
class Case:
    name: str
    args: list[str]
    env: dict[str, str]
    codes: tuple[int, ...]


def _cli_cases(tmp_path: Path, echo_at: str) -> list[tuple[Case, str]]:
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    nowhere = f"http://{closed_port()}"
    out: list[tuple[Case, str]] = []

    def add(name: str, args: list[str], env: dict[str, str], codes: tuple[int, ...], m: str) -> None:
        out.append((Case(name, args, env, codes), m))

    m = marker()
    add("prometheus url userinfo, unreachable", REPLAY, {"ORCHESTRATOR_PROMETHEUS_URL": f"http://u:{m}@{closed_port()}"},
        (3,), m)
    m = marker()
    add("prometheus url ?token=, unreachable", REPLAY, {"ORCHESTRATOR_PROMETHEUS_URL": f"{nowhere}/?token={m}"},
        (3,), m)
    m = marker()
    add("prometheus url ?access_token= and &api_key=, unreachable", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": f"{nowhere}/?x=1&access_token={m}&api_key={m}"}, (3,), m)
    m = marker()
    add("prometheus password with unencoded @", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": f"http://u:{m[:8]}@{m[8:16]}@{m[16:]}@{closed_port()}"}, (3,), m)
    m = marker()
    add("prometheus url malformed port", REPLAY, {"ORCHESTRATOR_PROMETHEUS_URL": f"http://u:{m}@127.0.0.1:99999"},
        (2,), m)
    m = marker()
    add("prometheus url malformed scheme", REPLAY, {"ORCHESTRATOR_PROMETHEUS_URL": f"ftp://u:{m}@127.0.0.1:1/?token={m}"},
        (2,), m)
    m = marker()
    add("prometheus url 64-character label", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": f"http://u:{m}@{'a' * 64}.invalid:1/?token={m}"}, (2,), m)
    m = marker()
    add("prometheus token, unreachable", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": nowhere, "ORCHESTRATOR_PROMETHEUS_TOKEN": m}, (3,), m)
    m = marker()
    add("prometheus token with a newline", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": nowhere, "ORCHESTRATOR_PROMETHEUS_TOKEN": f"{m}\nX-Injected: {m}"}, (2,), m)
    m = marker()
    add("prometheus token outside latin-1", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": nowhere, "ORCHESTRATOR_PROMETHEUS_TOKEN": f"{m}\u20ac"}, (2,), m)
    m = marker()
    token_file = tmp_path / "token-with-a-newline"
    token_file.write_text(f"{m}\nX-Injected: {m}\n")
    add("prometheus token file with a newline inside", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": nowhere, "ORCHESTRATOR_PROMETHEUS_TOKEN_FILE": str(token_file)}, (2,), m)
    m = marker()
    token_file = tmp_path / "token-outside-latin-1"
    token_file.write_text(f"{m}\u20ac\n")
    add("prometheus token file outside latin-1", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": nowhere, "ORCHESTRATOR_PROMETHEUS_TOKEN_FILE": str(token_file)}, (2,), m)
    m = marker()
    add("prometheus password, unreachable", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": nowhere, "ORCHESTRATOR_PROMETHEUS_USERNAME": "u",
         "ORCHESTRATOR_PROMETHEUS_PASSWORD": m}, (3,), m)
    m = marker()
    add("prometheus password outside latin-1", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": nowhere, "ORCHESTRATOR_PROMETHEUS_USERNAME": "u",
         "ORCHESTRATOR_PROMETHEUS_PASSWORD": f"{m}\u20ac"}, (2,), m)
    m = marker()
    add("prometheus refuses and echoes the token", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": f"http://{echo_at}", "ORCHESTRATOR_PROMETHEUS_TOKEN": m}, (3,), m)
    m = marker()
    add("prometheus refuses and echoes basic auth and the query", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": f"http://u:{m}@{echo_at}/?token={m}"}, (3,), m)
    m = marker()
    add("prometheus refuses and echoes the password", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": f"http://{echo_at}", "ORCHESTRATOR_PROMETHEUS_USERNAME": "u",
         "ORCHESTRATOR_PROMETHEUS_PASSWORD": m}, (3,), m)
    m = marker()
    add("prometheus bad CA file", REPLAY,
        {"ORCHESTRATOR_PROMETHEUS_URL": f"https://u:{m}@{echo_at}/?token={m}",
         "ORCHESTRATOR_PROMETHEUS_CA_FILE": str(bad_ca), "ORCHESTRATOR_PROMETHEUS_TOKEN": m}, (2, 3), m)
    m = marker()
    add("temporal address with userinfo", ["canary", "list"],
        {"ORCHESTRATOR_TEMPORAL_ADDRESS": f"u:{m}@{closed_port()}"}, (2,), m)
    m = marker()
    add("temporal address with an unencoded @", ["canary", "list"],
        {"ORCHESTRATOR_TEMPORAL_ADDRESS": f"u:{m[:8]}@{m[8:]}@{closed_port()}"}, (2,), m)
    m = marker()
    add("temporal api key, unreachable", ["canary", "list"],
        {"ORCHESTRATOR_TEMPORAL_ADDRESS": closed_port(), "ORCHESTRATOR_TEMPORAL_API_KEY": m}, (3,), m)
    m = marker()
    add("temporal api key with a newline", ["canary", "list"],
        {"ORCHESTRATOR_TEMPORAL_ADDRESS": closed_port(), "ORCHESTRATOR_TEMPORAL_API_KEY": f"{m}\n{m}"}, (2,), m)
    m = marker()
    add("temporal api key and a bad CA file", ["canary", "list"],
        {"ORCHESTRATOR_TEMPORAL_ADDRESS": closed_port(), "ORCHESTRATOR_TEMPORAL_API_KEY": m,
         "ORCHESTRATOR_TEMPORAL_TLS_CA": str(bad_ca)}, (2, 3), m)
    m = marker()
    add("--db password, unreachable", ["score", "--db", f"postgresql://u:{m}@{closed_port()}/x"], {}, (3,), m)
    m = marker()
    add("--db ?password=, unreachable", ["score", "--db", f"postgresql://u@{closed_port()}/x?password={m}"], {},
        (3,), m)
    m = marker()
    add("--db password with unencoded @", ["score", "--db", f"postgresql://u:{m[:8]}@{m[8:16]}@{m[16:]}@{closed_port()}/x"],
        {}, (2,), m)
    m = marker()
    add("--db port not a number", ["score", "--db", f"postgresql://u:{m}@127.0.0.1:notaport/x"], {}, (2,), m)
    m = marker()
    add("--db unclosed bracket", ["score", "--db", f"postgresql://u:{m}@[::1/x?password={m}"], {}, (2,), m)
    m = marker()
    add("--db unsupported database", ["score", "--db", f"mysql://u:{m}@127.0.0.1:1/x"], {}, (2,), m)
    m = marker()
    add("ORCHESTRATOR_DATABASE_URL password, unreachable", ["score"],
        {"ORCHESTRATOR_DATABASE_URL": f"postgresql://u:{m}@{closed_port()}/x?sslpassword={m}"}, (3,), m)
    m = marker()
    add("notify webhook malformed", ["canary", "list"],
        {"ORCHESTRATOR_TEMPORAL_ADDRESS": closed_port(), "ORCHESTRATOR_NOTIFY_WEBHOOK": f"ftp://127.0.0.1:1/hooks/{m}"},
        (2,), m)
    m = marker()
    add("notify webhook and unleash token beside an unreachable Temporal", ["canary", "list"],
        {"ORCHESTRATOR_TEMPORAL_ADDRESS": closed_port(), "ORCHESTRATOR_NOTIFY_WEBHOOK": f"http://127.0.0.1:1/hooks/{m}",
         "ORCHESTRATOR_UNLEASH_TOKEN": m}, (3,), m)
    return out


def _assert_clean(outcome: Outcome, case: Case, secret: str) -> None:
    assert "Traceback" not in outcome.err, (case.name, outcome.err[-2000:])
    assert outcome.code in case.codes, (case.name, outcome.code, outcome.err[-2000:])
    for name, text in (("stdout", outcome.out), ("stderr", outcome.err)):
        assert secret not in text, (case.name, name, text[-2000:])
        # Not a fragment either: the part after an unencoded "@" is as secret as the whole.
        for fragment in (secret[:8], secret[8:16], secret[16:]):
            assert fragment not in text, (case.name, name, fragment, text[-2000:])
    assert len(outcome.err_lines) == 1, (case.name, outcome.err)


def test_no_marker_on_any_cli_error_path(tmp_path: Path, echo: ThreadingHTTPServer) -> None:
    env = {"ORCHESTRATOR_DB": str(tmp_path / "runs.db"), "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "none")}
    cases = _cli_cases(tmp_path, _where(echo))
    assert len(cases) >= 25
    for case, secret in cases:
        _assert_clean(invoke(case.args, env={**env, **case.env}), case, secret)


@pytest.mark.parametrize("index", [0, 3, 8, 16, 23])
def test_no_marker_from_a_real_process(index: int, tmp_path: Path, echo: ThreadingHTTPServer) -> None:
    """The same, as a real process: nothing remembered by an earlier in-process case can help."""
    case, secret = _cli_cases(tmp_path, _where(echo))[index]
    env = {"ORCHESTRATOR_DB": str(tmp_path / "runs.db"), "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "none"), **case.env}
    _assert_clean(run_process(case.args, env=env, timeout=30), case, secret)


def test_the_redaction_rules() -> None:
    """The shapes seen leaking, each through the one function, with no secret remembered for them."""
    assert redact("cannot reach Prometheus at http://u:PW@127.0.0.1:1: refused") == \
        "cannot reach Prometheus at http://u:***@127.0.0.1:1: refused"
    assert redact("http://127.0.0.1:1/?token=PW: refused") == "http://127.0.0.1:1/?token=***: refused"
    assert redact("postgresql://u:SEC@RET@PW@h/x") == "postgresql://u:***@h/x"
    assert redact("'u:PW@h:1' is not host:port") == "'u:***@h:1' is not host:port"
    assert redact("header value: 'Bearer PW\\nX'") == "header value: 'Bearer ***'"
    assert redact("host=h password=PW user=u") == "host=h password=*** user=u"
    assert redact('{"Authorization": "Basic dTpQVw=="}') == '{"Authorization": "Basic ***"}'
    assert redact("resolve host 'RET@PW@127.0.0.1'") == "resolve host '***@127.0.0.1'"
    assert redact("postgresql://postgres@127.0.0.1/x") == "postgresql://postgres@127.0.0.1/x"
    # What is not a credential stays readable.
    assert redact("image app@sha256:abc at http://127.0.0.1:9090/api?query=up") == \
        "image app@sha256:abc at http://127.0.0.1:9090/api?query=up"
    assert redact("x TEMPSECRET1 y", secrets=["TEMPSECRET1"]) == "x *** y"


# -- a real worker ------------------------------------------------------------------------------------------


class _Hook(BaseHTTPRequestHandler):
    received: list[bytes]

    def do_POST(self) -> None:
        type(self).received.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@workflow.defn(name="SecretProbe", sandboxed=False)
class SecretProbe:
    """Calls the real worker's activities the way the engine does, and keeps what they answered."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.go = False

    @workflow.run
    async def run(self, queue: str, leak: str) -> list[str]:
        check = {"name": "errors", "query": "up", "condition": {"max": 0.1}}
        once = RetryPolicy(maximum_attempts=1)
        for phase in ("refused", "unreachable"):
            if phase == "unreachable":
                await workflow.wait_condition(lambda: self.go)
            try:
                measured = await workflow.execute_activity(
                    "canary.evaluate_check", {"check": check, "variables": {}}, task_queue=queue,
                    start_to_close_timeout=timedelta(seconds=30), retry_policy=once, result_type=dict)
                self.seen.append(f"{phase}: {json.dumps(measured, default=str)}")
            except ActivityError as exc:
                self.seen.append(f"{phase}: {exc.cause}")
        await workflow.execute_activity(
            "notify.outcome",
            {"kind": "canary", "name": "checkout", "outcome": "rolled_back", "reason": f"gate failed: {leak}",
             "workflow_id": workflow.info().workflow_id},
            task_queue=queue, start_to_close_timeout=timedelta(seconds=30), retry_policy=once)
        await workflow.execute_activity(
            "notify.rollback_stuck",
            {"kind": "canary", "workflow_id": workflow.info().workflow_id, "name": "checkout",
             "step": "reset_traffic", "error": f"cannot reach {leak}", "stuck": True},
            task_queue=queue, start_to_close_timeout=timedelta(seconds=30), retry_policy=once)
        return self.seen

    @workflow.signal
    def proceed(self) -> None:
        self.go = True

    @workflow.query
    def status(self) -> list[str]:
        return self.seen


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


async def test_no_marker_from_a_real_worker(temporal_address: str, echo: ThreadingHTTPServer, tmp_path: Path) -> None:
    secret = marker()
    received: list[bytes] = []
    hook = ThreadingHTTPServer(("127.0.0.1", 0), type("Hook", (_Hook,), {"received": received}))
    hook.daemon_threads = True
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    queue, probe_queue, health = f"secrets-{uuid.uuid4()}", f"probe-{uuid.uuid4()}", free_port()
    prometheus = f"http://u:{secret}@{_where(echo)}/?token={secret}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")} | {
        "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address, "ORCHESTRATOR_TASK_QUEUE": queue,
        "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "missing-kubeconfig"), "ORCHESTRATOR_DB": str(tmp_path / "runs.db"),
        "ORCHESTRATOR_PROMETHEUS_URL": prometheus,
        "ORCHESTRATOR_PROMETHEUS_TIMEOUT": "3",
        "ORCHESTRATOR_NOTIFY_WEBHOOK": f"http://127.0.0.1:{hook.server_address[1]}/hooks/{secret}",
        "ORCHESTRATOR_UNLEASH_TOKEN": secret,
    }
    logs = tmp_path / "worker.log"
    with logs.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker", "--health-port", str(health), "--log-format", "json",
             "--log-level", "DEBUG"],
            env=env, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not _ready(health):
            assert proc.poll() is None, logs.read_text()[-3000:]
            assert time.monotonic() < deadline, "the worker never became ready"
            await asyncio.sleep(0.2)
        client = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
        leak = f"{prometheus} with Authorization: Bearer {secret}"
        async with Worker(client, task_queue=probe_queue, workflows=[SecretProbe]):
            handle = await client.start_workflow(
                SecretProbe.run, args=[queue, leak], id=f"probe-{uuid.uuid4()}", task_queue=probe_queue,
                execution_timeout=timedelta(seconds=120))
            while len(await handle.query(SecretProbe.status)) < 1:
                await asyncio.sleep(0.1)
            # From now on Prometheus is gone: the same URL, nothing listening.
            echo.shutdown()
            echo.server_close()
            await handle.signal(SecretProbe.proceed)
            result = await handle.result()
            status = await handle.query(SecretProbe.status)
        history = (await handle.fetch_history()).to_json()
    finally:
        proc.terminate()
        proc.wait(20)
        hook.shutdown()
        hook.server_close()
    worker_log = logs.read_text()
    # The paths really ran: both gate errors and both notifications are there to be searched.
    assert [line.split(":", 1)[0] for line in result] == ["refused", "unreachable"], result
    assert "refused" in result[0] and "Prometheus" in result[1], result
    assert len(received) >= 2, received
    places = {"result": json.dumps(result), "status": json.dumps(status), "history": history,
              "worker log": worker_log, "notifications": b"\n".join(received).decode()}
    for where, text in places.items():
        assert secret not in text, (where, text[text.find(secret) - 300: text.find(secret) + 100])


@pytest.mark.parametrize("text", ["a" * 100_000, "x=" + "a" * 100_000, "ab://" * 20_000, "a:" * 50_000])
def test_redaction_stays_linear_on_a_large_message(text: str) -> None:
    """A worker logs whole response bodies at times: a quadratic pattern would stall every log line."""
    started = time.monotonic()
    redact(text)
    assert time.monotonic() - started < 5
