"""The real parts of the stack, each one killable and restartable, for the fault-injection suite and its report.

The suite (``tests/reliability/``) and ``benchmarks/reliability.py`` run the same scenarios, so the moving
parts live here and take no pytest fixture: a Temporal dev server on a fixed port with its persistent
``--db-filename`` (so a SIGKILL and a restart keep every workflow), a Prometheus on a fixed port over a
TSDB built with promtool (so it can die and come back with the same data), a proxy in front of the sandbox
Kubernetes API server that answers error storms or refuses connections (the API server itself stays
untouched: it is what a real cluster would be behind a flaky load balancer), and workers as separate
processes started with ``python -m orchestrator worker`` (a SIGKILL leaves no chance to clean up).

Measurements come from the two records nobody can tidy up afterwards: the workflow history (which
activities were scheduled, completed, retried) and the API server's audit log (which writes landed).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

ROOT = Path(__file__).resolve().parents[2]
SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
COMPLETED = EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
WRITES = frozenset({"create", "post", "patch", "update", "put", "delete"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _binary(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"the {name} binary is missing (make install provides it)")
    return found


def _stop(proc: subprocess.Popen[Any] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# ---- Temporal --------------------------------------------------------------------------------------


@dataclass
class TemporalServer:
    """A dev server whose state lives in ``workdir/temporal.db``: killed and started again, it forgets nothing."""

    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> TemporalServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        ui = free_port()
        self.proc = subprocess.Popen(
            [_binary("temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
             "--ui-port", str(ui), "--db-filename", str(self.workdir / "temporal.db"), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush beyond what SQLite already committed."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        _stop(self.proc)


async def connect(address: str, timeout: float = 30.0) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address, data_converter=pydantic_data_converter)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


# ---- Prometheus ------------------------------------------------------------------------------------


@dataclass
class PromServer:
    """A Prometheus on a fixed port over a TSDB of the live scenarios (``tests/fixtures_prom.py``)."""

    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def build(self, copy_from: Path | None = None) -> PromServer:
        """The TSDB: blocks copied from a running fixture's (they are immutable), or made afresh by promtool."""
        self.root.mkdir(parents=True, exist_ok=True)
        if copy_from is not None:
            self.data_dir.mkdir(exist_ok=True)
            for block in copy_from.iterdir():
                if block.is_dir() and (block / "meta.json").exists():
                    shutil.copytree(block, self.data_dir / block.name)
        else:
            from tests.fixtures_prom import LIVE_BEHIND, _backfill

            now = datetime.now(UTC).replace(microsecond=0)
            _backfill(self.root, self.data_dir, now, now - LIVE_BEHIND)
        (self.root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
        return self

    def start(self) -> PromServer:
        log = (self.root / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [_binary("prometheus"), f"--storage.tsdb.path={self.data_dir}", "--storage.tsdb.retention.time=20y",
             f"--web.listen-address=127.0.0.1:{self.port}", f"--config.file={self.root / 'prometheus.yml'}"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/-/ready")
                if conn.getresponse().status == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError("Prometheus did not become ready")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.kills += 1

    def stop(self) -> None:
        _stop(self.proc)


# ---- the Kubernetes API, behind a proxy that can misbehave -----------------------------------------


class ApiFaults:
    """A reverse proxy to the sandbox API server: passes through, answers storms of 500/409/429, or is down.

    ``storm(codes, on, off)`` answers *every* request with the next code of ``codes`` for ``on`` seconds,
    then passes everything for ``off`` seconds, and again: error bursts as an overloaded or failing-over
    control plane gives them (a fixed one-in-N pattern would instead fail every call that makes N
    requests, forever, which no cluster does). ``down()`` closes the listening socket (connection
    refused, as an API server that is gone); ``up()`` listens again on the same port.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.port = free_port()
        self.codes: tuple[int, ...] = ()
        self.on = self.off = 0.0
        self.began = 0.0
        self.injected = 0
        self._lock = threading.Lock()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        import yaml

        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "faults", "preferences": {},
            "clusters": [{"name": "faults", "cluster": {"server": self.url}}],
            "users": [{"name": "faults", "user": {"token": "sandbox"}}],
            "contexts": [{"name": "faults", "context": {"cluster": "faults", "user": "faults"}}]}))
        return path

    def storm(self, codes: tuple[int, ...], on: float = 1.0, off: float = 2.0) -> None:
        with self._lock:
            self.codes, self.on, self.off, self.began = codes, on, off, time.monotonic()

    def calm(self) -> None:
        with self._lock:
            self.codes = ()

    def _fault(self) -> int | None:
        with self._lock:
            if not self.codes or (time.monotonic() - self.began) % (self.on + self.off) >= self.on:
                return None
            self.injected += 1
            return self.codes[self.injected % len(self.codes)]

    def up(self) -> ApiFaults:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                code = proxy._fault()
                if code is not None:
                    reply = (b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":%d,'
                             b'"reason":"injected","message":"injected by the reliability suite"}' % code)
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    if code == 429:
                        self.send_header("Retry-After", "1")
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._httpd = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def down(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


# ---- workers ---------------------------------------------------------------------------------------


@dataclass
class Workers:
    """Worker processes, started as an operator would (``python -m orchestrator worker``)."""

    env: dict[str, str]
    log: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    kills: int = 0

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "worker"], cwd=ROOT,
                                    env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        self.kills += 1

    def stop_all(self) -> None:
        for proc in self.procs:
            _stop(proc)


def worker_env(*, temporal: str, task_queue: str, kubeconfig: Path, prom_url: str, workdir: Path,
               **extra: str) -> dict[str, str]:
    return {"ORCHESTRATOR_TEMPORAL_ADDRESS": temporal, "ORCHESTRATOR_TASK_QUEUE": task_queue,
            "ORCHESTRATOR_KUBECONFIG": str(kubeconfig), "ORCHESTRATOR_PROMETHEUS_URL": prom_url,
            "ORCHESTRATOR_PROMETHEUS_TIMEOUT": "2", "ORCHESTRATOR_DB": str(workdir / "runs.db"),
            "ORCHESTRATOR_STATE_DIR": str(workdir), "ORCHESTRATOR_JANITOR_INTERVAL": "0", **extra}


# ---- reading the records ---------------------------------------------------------------------------


async def activity_events(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str]]:
    """(``scheduled``|``completed``, activity type) in history order, across continue-as-new runs."""
    names: dict[int, str] = {}
    out: list[tuple[str, str]] = []
    async for event in handle.fetch_history_events():
        if event.event_type == SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            names[event.event_id] = name
            out.append(("scheduled", name))
        elif event.event_type == COMPLETED:
            out.append(("completed", names.get(event.activity_task_completed_event_attributes.scheduled_event_id,
                                               "?")))
    return out


async def scheduled_counts(handle: WorkflowHandle[Any, Any]) -> Counter[str]:
    return Counter(name for what, name in await activity_events(handle) if what == "scheduled")


async def kill_at_boundary(handle: WorkflowHandle[Any, Any], boundary: Callable[[list[tuple[str, str]]], bool],
                           kill: Callable[[], None], timeout: float = 150.0) -> list[tuple[str, str]]:
    """Poll the history and call ``kill`` the moment ``boundary(events)`` holds; returns the events then seen."""
    deadline = time.monotonic() + timeout
    while True:
        events = await activity_events(handle)
        if boundary(events):
            kill()
            return events
        if time.monotonic() > deadline:
            raise AssertionError(f"boundary never reached; history: {events[-10:]}")
        await asyncio.sleep(0.03)


def nth(what: str, name: str | None, n: int) -> Callable[[list[tuple[str, str]]], bool]:
    """The boundary: the ``n``-th (1-based) ``what`` event of activity ``name`` (any activity with None)."""

    def reached(events: list[tuple[str, str]]) -> bool:
        return sum(1 for w, a in events if w == what and (name is None or a == name)) >= n

    return reached


def writes(audit: list[dict[str, Any]], namespace: str) -> Counter[str]:
    """Successful writes per ``resource/name[/subresource] verb`` in ``namespace`` (the cluster's own record)."""
    out: Counter[str] = Counter()
    for e in audit:
        landed = 200 <= int(e.get("code") or 0) < 300
        if e.get("namespace") != namespace or str(e.get("verb")) not in WRITES or not landed:
            continue
        if e.get("resource") in ("events", "pods") or e.get("subresource") == "status":
            continue  # the controller's own bookkeeping, not the orchestrator's steps
        sub = f"/{e['subresource']}" if e.get("subresource") else ""
        out[f"{e.get('resource')}/{e.get('name')}{sub} {e.get('verb')}"] += 1
    return out


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.2)


@contextlib.contextmanager
def stopping(*things: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in things:
            with contextlib.suppress(Exception):
                (thing.stop_all if isinstance(thing, Workers) else thing.stop)()


def seconds(delta: timedelta) -> float:
    return delta.total_seconds()


async def last_runner_pid(handle: WorkflowHandle[Any, Any]) -> int | None:
    """The pid of the worker that last took a task of the run (a workflow task or an activity; ``pid@host``)."""
    pid = None
    async for event in handle.fetch_history_events():
        identity = ""
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            identity = event.activity_task_started_event_attributes.identity
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            identity = event.workflow_task_started_event_attributes.identity
        if identity.split("@", 1)[0].isdigit():
                pid = int(identity.split("@", 1)[0])
    return pid
