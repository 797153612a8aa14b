"""Fixtures of the flag-ramp suite: a variant-labelled exporter scraped by a real Prometheus.

The shared ``prom_live`` data has no ``variant`` label and never changes, while ramp
tests need treatment and control series and counters that grow (minimum sample). So
this suite runs its own exporter, whose per-variant request rates tests set while they
run, and a real ``prometheus`` scraping it every second::

    flag_requests_total{app, variant, code="200"|"500"}

Each test uses its own ``app`` label, so tests share one Prometheus without seeing each
other's traffic.

``unleash`` runs each Unleash provider test twice: against the HTTP double and against a real
unleash-server 7.5.1 on a private PostgreSQL 15 cluster (one per session, see ``unleash_real``).
"""

from __future__ import annotations

import http.server
import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.sandbox.unleash_api import UnleashAdminServer
from tests.fixtures_temporal import free_port
from tests.flags.unleash_real import DoubleUnleash, RealUnleash, StartupTimes, UnleashBackend

ERROR_RATIO = (
    'sum(rate(flag_requests_total{app="{{app}}",variant="{{variant}}",code="500"}[4s]))'
    ' / sum(rate(flag_requests_total{app="{{app}}",variant="{{variant}}"}[4s]))'
)
REQUESTS = 'sum(flag_requests_total{app="{{app}}",variant="{{variant}}"})'


@dataclass
class _Series:
    rps: float = 0.0
    error_ratio: float = 0.0
    total: float = 0.0
    errors: float = 0.0


class VariantExporter:
    """Serves growing request counters per (app, variant); rates are set by tests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], _Series] = {}
        self._last = time.monotonic()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def set(self, app: str, variant: str, rps: float, error_ratio: float = 0.0) -> None:
        with self._lock:
            self._advance()
            series = self._series.setdefault((app, variant), _Series())
            series.rps, series.error_ratio = rps, error_ratio

    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        for s in self._series.values():
            s.total += s.rps * dt
            s.errors += s.rps * s.error_ratio * dt

    def render(self) -> str:
        with self._lock:
            self._advance()
            lines = ["# TYPE flag_requests_total counter"]
            for (app, variant), s in sorted(self._series.items()):
                ok = s.total - s.errors
                lines.append(f'flag_requests_total{{app="{app}",variant="{variant}",code="200"}} {ok:.3f}')
                lines.append(f'flag_requests_total{{app="{app}",variant="{variant}",code="500"}} {s.errors:.3f}')
            return "\n".join(lines) + "\n"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class FlagProm:
    url: str
    exporter: VariantExporter

    def query(self, promql: str) -> list[dict[str, object]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, object]] = json.load(response)["data"]["result"]
        return result

    def traffic(self, app: str, variants: dict[str, tuple[float, float]], timeout: float = 20.0) -> None:
        """Set (rps, error ratio) per variant and wait until Prometheus has rates for all of them."""
        for variant, (rps, ratio) in variants.items():
            self.exporter.set(app, variant, rps, ratio)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready = all(
                self.query(f'sum(rate(flag_requests_total{{app="{app}",variant="{v}"}}[4s])) > 0')
                for v, (rps, _) in variants.items() if rps > 0
            )
            if ready:
                return
            time.sleep(0.3)
        pytest.fail(f"Prometheus did not scrape the traffic of {app} in {timeout}s")


@pytest.fixture(scope="session")
def flag_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlagProm]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is missing: apt-get install -y prometheus (make test does)")
    exporter = VariantExporter()
    root = tmp_path_factory.mktemp("flag-prom")
    config = root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: flags\n    static_configs: [{{targets: ['{exporter.target}']}}]\n"
    )
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={root / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"prometheus did not start: {(root / 'prometheus.log').read_text()[-2000:]}")
                time.sleep(0.2)
        yield FlagProm(url=url, exporter=exporter)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        exporter.stop()


@pytest.fixture
def app_name() -> str:
    return f"app-{uuid.uuid4().hex[:8]}"


def flags_json(path: Path, key: str) -> None:
    path.write_text(json.dumps({
        "flags": {
            key: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {},
            },
        },
    }, indent=2))


_unleash_startups: list[StartupTimes] = []


@pytest.fixture(scope="session")
def real_unleash() -> Iterator[RealUnleash]:
    reason = RealUnleash.missing()
    if reason is not None:
        pytest.fail(reason)
    server = RealUnleash()
    try:
        try:
            server.start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            pytest.fail(f"a real Unleash could not be started: {exc}")
        _unleash_startups.append(server.times)
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["double", "real"])
def unleash(request: pytest.FixtureRequest) -> Iterator[UnleashBackend]:
    """An Unleash with a fresh admin token: the in-process double, or the session's real server."""
    if request.param == "double":
        with UnleashAdminServer(f"*:*.{secrets.token_hex(16)}") as server:
            yield DoubleUnleash(server)
    else:
        real: RealUnleash = request.getfixturevalue("real_unleash")
        yield real


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for t in _unleash_startups:
        terminalreporter.write_line(
            f"real Unleash 7.5.1: PostgreSQL 15 cluster ready in {t.postgres_seconds:.1f}s, "
            f"unleash-server (with migrations) in {t.unleash_seconds:.1f}s"
        )
