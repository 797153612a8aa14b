"""A real Prometheus with known data, for gate tests (``prom_backfilled``) and workflow tests (``prom_live``).

One Prometheus process per session serves both fixtures from one TSDB built with
``promtool tsdb create-blocks-from openmetrics``:

* ``prom_backfilled``: scenarios at a fixed past date (2024-01-01), queried at
  ``.at``: fully deterministic and a replay of "past data", as a gate replay would do.
* ``prom_live``: the same scenarios around the present moment, for code that evaluates
  at "now" (no ``time=`` parameter).

How live data is made (option a of the two considered): the backfilled blocks simply
extend from one hour before the session started to ``LIVE_AHEAD`` into the future.
Prometheus 2.42 loads blocks with future timestamps and answers instant queries at
"now" from them (checked when the fixture starts: it fails loudly if that ever stops
being true). This was preferred over a scraped exporter (option b) because the values
are exact from the first second: no wait for two scrapes before ``rate()`` exists, no
jitter from scrape timing, and no extra thread, so workflow tests can assert ≈0.005 and
≈0.10 without tolerance games. The cost is that live data is static (it cannot change
mid-test); tests that need a metric to change while they run need a scraped target.

Every scenario is in namespace ``prod``; each track serves ``rps`` requests per second
(``http_requests_total{namespace,app,track,code}``, codes 200 and 500) and observes
latencies into ``http_request_duration_seconds`` (buckets ``LE``, fast ≈0.1 s mean,
slow ≈0.2 s)::

    healthy  stable, canary, baseline: 0.5 % 5xx, fast
    broken   stable 0.5 %, canary 10 % 5xx
    nodata   stable only; no canary series at all
    slow     stable fast, canary slow (≈2x latency), both 0.5 % 5xx
    idle     (backfill only) stable and canary series exist but never grow: rates 0, ratio 0/0 = NaN
    sharded  (backfill only) canary served by pods a (0.5 %) and b (10 %), label ``pod``

Series are labelled as Prometheus labels them on a real cluster, from pod labels: canary and
baseline pods carry ``track`` (the orchestrator puts it on the copies it creates), stable pods
carry no ``track`` at all, because nobody relabels the user's Deployment. A query that selects
the stable side with ``track="stable"`` finds nothing here, as it would in production.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import math
import shutil
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures_temporal import free_port

NAMESPACE = "prod"
STEP_SECONDS = 5
LIVE_BEHIND = timedelta(hours=1)
LIVE_AHEAD = timedelta(minutes=90)
BACKFILL_START = datetime(2024, 1, 1, tzinfo=UTC)
BACKFILL_LENGTH = timedelta(minutes=20)
BACKFILL_AT = BACKFILL_START + timedelta(minutes=15)

ERROR_RATIO_QUERY = (
    'sum(rate(http_requests_total{namespace="{{namespace}}",app="{{app}}",{{track_selector}},code=~"5.."}[30s]))'
    ' / sum(rate(http_requests_total{namespace="{{namespace}}",app="{{app}}",{{track_selector}}}[30s]))'
)
MEAN_LATENCY_QUERY = (
    'sum(rate(http_request_duration_seconds_sum{namespace="{{namespace}}",app="{{app}}",{{track_selector}}}[30s]))'
    ' / sum(rate(http_request_duration_seconds_count{namespace="{{namespace}}",app="{{app}}",'
    '{{track_selector}}}[30s]))'
)
STABLE_TRACK = "stable"  # a scenario's key for the stable pods, whose series carry no ``track`` label

LE = ("0.05", "0.1", "0.25", "0.5", "1", "+Inf")
# Cumulative share of requests at or below each bucket bound, and the mean latency they imply.
FAST = ((0.2, 0.6, 0.95, 0.99, 1.0, 1.0), 0.1)
SLOW = ((0.05, 0.2, 0.6, 0.95, 0.99, 1.0), 0.2)


@dataclass(frozen=True)
class TrackProfile:
    error_ratio: float = 0.005
    rps: float = 20.0
    latency: tuple[tuple[float, ...], float] = FAST
    pod: str | None = None

    @property
    def mean_latency(self) -> float:
        return self.latency[1]


@dataclass(frozen=True)
class Scenario:
    app: str
    tracks: dict[str, list[TrackProfile]]
    namespace: str = NAMESPACE

    def error_ratio(self, track: str) -> float | None:
        """The expected error ratio of a track, or None when the track has no series."""
        profiles = self.tracks.get(track)
        if not profiles:
            return None
        total = sum(p.rps for p in profiles)
        return math.nan if total == 0 else sum(p.rps * p.error_ratio for p in profiles) / total

    def variables(self, **extra: str) -> dict[str, str]:
        return {"namespace": self.namespace, "app": self.app, **extra}


def _tracks(**tracks: TrackProfile | list[TrackProfile]) -> dict[str, list[TrackProfile]]:
    return {name: p if isinstance(p, list) else [p] for name, p in tracks.items()}


LIVE_SCENARIOS: dict[str, Scenario] = {
    "healthy": Scenario("healthy", _tracks(stable=TrackProfile(), canary=TrackProfile(), baseline=TrackProfile())),
    "broken": Scenario("broken", _tracks(stable=TrackProfile(), canary=TrackProfile(error_ratio=0.10))),
    "nodata": Scenario("nodata", _tracks(stable=TrackProfile())),
    "slow": Scenario("slow", _tracks(stable=TrackProfile(), canary=TrackProfile(latency=SLOW))),
}
BACKFILL_SCENARIOS: dict[str, Scenario] = {
    **LIVE_SCENARIOS,
    "idle": Scenario("idle", _tracks(stable=TrackProfile(rps=0), canary=TrackProfile(rps=0))),
    "sharded": Scenario(
        "sharded",
        _tracks(
            stable=TrackProfile(),
            canary=[TrackProfile(rps=10, pod="a"), TrackProfile(rps=10, error_ratio=0.10, pod="b")],
        ),
    ),
}


@dataclass(frozen=True)
class PromData:
    """A running Prometheus and the scenarios it holds; query at ``at`` (None: now)."""

    url: str
    scenarios: dict[str, Scenario]
    at: datetime | None = None
    data_dir: Path = field(default=Path("."))

    def query(self, promql: str) -> list[dict[str, object]]:
        """A raw instant query, for fixture self-checks and test setup (not the code under test)."""
        params = {"query": promql}
        if self.at is not None:
            params["time"] = str(self.at.timestamp())
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        result: list[dict[str, object]] = body["data"]["result"]
        return result


def _openmetrics(scenarios: dict[str, Scenario], start: datetime, end: datetime) -> Iterator[str]:
    """OpenMetrics text: each series' samples contiguous and in time order, as promtool requires."""
    t0 = int(start.timestamp())
    times = range(t0, int(end.timestamp()) + 1, STEP_SECONDS)
    profiles = [(s, track, p) for s in scenarios.values() for track, ps in s.tracks.items() for p in ps]

    def labels(s: Scenario, track: str, p: TrackProfile, **more: str) -> str:
        pairs = {"namespace": s.namespace, "app": s.app}
        if track != STABLE_TRACK:
            pairs["track"] = track
        if p.pod:
            pairs["pod"] = p.pod
        pairs.update(more)
        return ",".join(f'{k}="{v}"' for k, v in pairs.items())

    yield "# TYPE http_requests counter"
    for s, track, p in profiles:
        for code, share in (("200", 1 - p.error_ratio), ("500", p.error_ratio)):
            name = f"http_requests_total{{{labels(s, track, p, code=code)}}}"
            rate = p.rps * share
            for t in times:
                yield f"{name} {rate * (t - t0):.6f} {t}"
    yield "# TYPE http_request_duration_seconds histogram"
    for s, track, p in profiles:
        shares, mean = p.latency
        base = labels(s, track, p)
        for t in times:
            n = p.rps * (t - t0)
            for le, share in zip(LE, shares, strict=True):
                yield f'http_request_duration_seconds_bucket{{{base},le="{le}"}} {n * share:.6f} {t}'
            yield f"http_request_duration_seconds_count{{{base}}} {n:.6f} {t}"
            yield f"http_request_duration_seconds_sum{{{base}}} {n * mean:.6f} {t}"
    yield "# EOF"


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        pytest.fail(f"{name} is missing: apt-get install -y prometheus")
    return found


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    pytest.fail(f"prometheus at {url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass(frozen=True)
class _Server:
    url: str
    data_dir: Path
    live_from: datetime


@pytest.fixture(scope="session")
def _prom_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    root = tmp_path_factory.mktemp("prometheus")
    data_dir = root / "data"
    now = datetime.now(UTC).replace(microsecond=0)
    live_from = now - LIVE_BEHIND
    _backfill(root, data_dir, now, live_from)

    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "prometheus.log"
    with log.open("wb") as log_out:
        process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--storage.tsdb.path={data_dir}",
                # Retention counts back from the newest block (the live data, in the future);
                # the fixed 2024 scenarios must survive it.
                "--storage.tsdb.retention.time=20y",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--config.file={config}",
            ],
            stdout=log_out,
            stderr=subprocess.STDOUT,
            cwd=root,
        )
    try:
        _wait_ready(url, process, log)
        yield _Server(url=url, data_dir=data_dir, live_from=live_from)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _backfill(root: Path, data_dir: Path, now: datetime, live_from: datetime) -> None:
    # Two sources, one per time range: a family may appear only once per OpenMetrics file.
    sources = {
        "backfill.om": _openmetrics(BACKFILL_SCENARIOS, BACKFILL_START, BACKFILL_START + BACKFILL_LENGTH),
        "live.om": _openmetrics(LIVE_SCENARIOS, live_from, now + LIVE_AHEAD),
    }
    for name, lines in sources.items():
        path = root / name
        with path.open("w") as out:
            out.writelines(line + "\n" for line in lines)
        result = subprocess.run(
            [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(path), str(data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"promtool failed on {name}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        path.unlink()


@pytest.fixture(scope="session")
def prom_backfilled(_prom_server: _Server) -> PromData:
    """Scenarios on 2024-01-01; query at ``.at`` (15 min into the data)."""
    data = PromData(url=_prom_server.url, scenarios=BACKFILL_SCENARIOS, at=BACKFILL_AT, data_dir=_prom_server.data_dir)
    _self_check(data)
    return data


@pytest.fixture(scope="session")
def prom_live(_prom_server: _Server) -> PromData:
    """Scenarios around the present; query at now (``.at`` is None). See the module docstring."""
    data = PromData(url=_prom_server.url, scenarios=LIVE_SCENARIOS, at=None, data_dir=_prom_server.data_dir)
    _self_check(data)
    return data


def _self_check(data: PromData) -> None:
    # Fail the fixture, not the tests using it, if the data is not what the docstring promises.
    healthy = data.scenarios["healthy"]
    query = ERROR_RATIO_QUERY.replace("{{track_selector}}", 'track="canary"')
    for name, value in healthy.variables().items():
        query = query.replace("{{" + name + "}}", value)
    result = data.query(query)
    got = float(str(result[0]["value"][1])) if result else None  # type: ignore[index]
    if got is None or abs(got - 0.005) > 1e-9:
        pytest.fail(f"prometheus at {data.url} does not serve the expected data at {data.at or 'now'}: {result}")


class PromProxy:
    """A reverse proxy in front of the test Prometheus that checks ``Authorization`` like a gateway would.

    Requests whose header is not in ``accept`` get 401; with ``fail_with`` set every request
    gets that status (a broken gateway); otherwise the request is forwarded unchanged.
    ``seen`` records every ``Authorization`` header received, so tests can prove what was sent.
    """

    def __init__(self, upstream: str, tls: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream
        self.accept: set[str | None] = {None}
        self.fail_with: int | None = None
        self.seen: list[str | None] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                header = self.headers.get("Authorization")
                proxy.seen.append(header)
                if proxy.fail_with is not None:
                    self._answer(proxy.fail_with, b"upstream unavailable\n", "text/plain")
                elif header not in proxy.accept:
                    self._answer(401, b"Unauthorized\n", "text/plain")
                else:
                    try:
                        with urllib.request.urlopen(proxy.upstream + self.path, timeout=10) as response:
                            status, body = response.status, response.read()
                            kind = response.headers.get("Content-Type", "application/json")
                    except urllib.error.HTTPError as error:
                        status, body = error.code, error.read()
                        kind = error.headers.get("Content-Type", "application/json")
                    self._answer(status, body, kind)

            def _answer(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def basic(self, username: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@contextlib.contextmanager
def _running(proxy: PromProxy) -> Iterator[PromProxy]:
    proxy.thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()


@pytest.fixture
def prom_proxy(_prom_server: _Server) -> Iterator[PromProxy]:
    """A fresh authenticating proxy per test (its settings are per-test state)."""
    with _running(PromProxy(_prom_server.url)) as proxy:
        yield proxy


@dataclass(frozen=True)
class TlsProxy:
    proxy: PromProxy
    ca_file: Path
    """The self-signed certificate the proxy presents (for 127.0.0.1), usable as a CA file."""


@pytest.fixture(scope="session")
def _self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("openssl is missing: it makes the test certificate")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def prom_tls_proxy(_prom_server: _Server, _self_signed: tuple[Path, Path]) -> Iterator[TlsProxy]:
    """The proxy behind HTTPS with a self-signed certificate, to check CA files and insecure mode."""
    cert, key = _self_signed
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with _running(PromProxy(_prom_server.url, tls=context)) as proxy:
        yield TlsProxy(proxy=proxy, ca_file=cert)
