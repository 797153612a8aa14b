"""The worker's HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz, /metrics.

Shape: ``HealthServer`` wraps a stdlib ``ThreadingHTTPServer`` running in a daemon thread, so it
keeps answering while the worker's event loop is busy or blocked.

* ``/healthz`` answers 200 as long as the process serves HTTP (liveness: restart only a wedged process);
* ``/readyz`` answers 200 only while ``ready()`` is true, 503 otherwise. The worker sets its
  ``ReadyFlag`` once it is connected to Temporal and polling, and clears it first thing on SIGTERM so
  the pod leaves the Service before the worker drains;
* ``/metrics`` is the ``Metrics`` registry's exposition (``prometheus_client``);
  ``orchestrator_worker_ready`` is refreshed from ``ready()`` on each scrape so the gauge cannot disagree with /readyz.

Typical use by the worker::

    ready = ReadyFlag()
    server = start_health(settings_port, ready, host="0.0.0.0")
    ... connect, start polling ...; ready.set()
    ... on SIGTERM: ready.clear(); drain; server.stop()
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from orchestrator.telemetry import CONTENT_TYPE, Metrics, default_metrics

log = logging.getLogger(__name__)


class ReadyFlag:
    """A thread-safe boolean the worker flips; callable, so it can be passed as ``ready``."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._event = threading.Event()
        self._metrics = metrics

    def set(self) -> None:
        self._event.set()
        self._publish()

    def clear(self) -> None:
        self._event.clear()
        self._publish()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def _publish(self) -> None:
        if self._metrics is not None:
            self._metrics.worker_ready.set(1 if self._event.is_set() else 0)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._reply(200, "ok\n")
        elif path == "/readyz":
            try:
                ready = bool(self.server.ready())
            except Exception:
                # A readiness callback that fails means "not ready", never a crashed endpoint.
                log.exception("readiness check failed")
                ready = False
            self._reply(200 if ready else 503, "ready\n" if ready else "not ready\n")
        elif path == "/metrics":
            self._reply(200, self.server.render_metrics(), CONTENT_TYPE)
        else:
            self._reply(404, "not found\n")

    def _reply(self, status: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        # Probes hit these endpoints every few seconds; access logs would drown the worker's own logs.
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], ready: Callable[[], bool], metrics: Metrics) -> None:
        super().__init__(address, _Handler)
        self.ready = ready
        self.metrics = metrics

    def render_metrics(self) -> str:
        try:
            self.metrics.worker_ready.set(1 if self.ready() else 0)
        except Exception:
            self.metrics.worker_ready.set(0)
        return self.metrics.render()


class HealthServer:
    """Serves /healthz, /readyz and /metrics from a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        ready: Callable[[], bool],
        metrics: Metrics | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._ready = ready
        self._metrics = metrics if metrics is not None else default_metrics()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when started with port 0)."""
        if self._server is None:
            return self._requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> HealthServer:
        if self._server is not None:
            return self
        try:
            self._server = _Server((self.host, self._requested_port), self._ready, self._metrics)
        except OSError as exc:
            from orchestrator.errors import SpecError

            raise SpecError([f"<command line>:0: --health-port: cannot listen on {self.host}:{self._requested_port}: "
                             f"{exc.strerror or exc}"]) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="health-server", daemon=True
        )
        self._thread.start()
        log.info("health server listening", extra={"host": self.host, "port": self.port})
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_health(
    port: int,
    ready: Callable[[], bool],
    *,
    host: str | None = None,
    metrics: Metrics | None = None,
) -> HealthServer:
    """Start a ``HealthServer`` on ``host:port`` with the default metrics unless given others.

    ``host`` defaults to ``ORCHESTRATOR_HEALTH_HOST``, else loopback. The chart and the image set
    that variable to ``0.0.0.0`` because the kubelet probes the pod IP; on a laptop the endpoints
    stay private.
    """
    if host is None:
        host = os.environ.get("ORCHESTRATOR_HEALTH_HOST") or "127.0.0.1"
    return HealthServer(host, port, ready, metrics).start()
