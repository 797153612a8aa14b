"""The bundled demo HTTP service that every sandbox pod runs.

Run as ``python -m orchestrator.sandbox.demo_service``; standard library only unless it
evaluates feature flags (then the OpenFeature SDK and its flagd provider, imported only
then), so a pod starts in a fraction of a second. Everything comes from the environment, which the
sandbox runtime fills from the pod template, so a "bad version" is just a Deployment
whose template says so:

====================  =====================================================================
PORT                  port to listen on (127.0.0.1); ignored when LISTEN_FD is given
LISTEN_FD             an already bound and listening socket inherited from the runtime
NAMESPACE APP TRACK   labels put on every metric (no TRACK: no track label, as for stable pods)
VERSION POD
ERROR_RATE            0..1, fraction of ``/`` requests answered 500
LATENCY_MS            added latency: ``50`` or a range ``50-150`` (uniform, seeded RNG)
CRASH_AFTER_SECONDS   exit with status 1 after this many seconds
STARTUP_SECONDS       ``/healthz`` answers 503 until this many seconds have passed
WATCH_PARENT          ``1``: exit when the parent process goes away (no orphans)
FLAGD_FILE            a flagd flag definition file, evaluated through the OpenFeature SDK
                      with the flagd provider in file mode (it reloads on change)
FLAGS                 the boolean flags evaluated for every ``/`` request (comma-separated)
FLAG_ERROR_RATE       ``flag:variant=rate,...``: the variant's code path fails this fraction
                      of its requests (how a bad variant behaves)
====================  =====================================================================

Endpoints: ``/`` (the work), ``/healthz`` (readiness), ``/metrics`` (Prometheus text
exposition format 0.0.4, written by hand): ``http_requests_total`` and the
``http_request_duration_seconds`` histogram, both labelled namespace, app, track,
version, pod and code; with flags, ``http_requests_by_flag_total`` counts the same
requests once per flag, labelled also by ``flag`` and the ``variant`` it served. (A
``variant`` label on ``http_requests_total`` itself would count a request once per flag
and break every query that sums it.) The targeting key of a request is its ``user``
query parameter (the sandbox's traffic generator sends one per simulated user).
``process_start_time_seconds`` (Unix time), as every Prometheus client library exports it,
is how a pod that replaced a killed one shows in the app's own metrics: the demo's pod-kill
experiment detects its fault by it (experiments/pod-kill.yaml).

Like a well-behaved exporter, every series a gate divides by or counts is exported at
zero from the start: codes 200 and 500 per metric, and per flag every variant the flag
file defines. An error series that appeared only at the first error would make
``rate()`` ratios read low while the window fills.

Errors are deterministic, not random: request *n* (counting from 1) fails exactly when
``floor(n * rate)`` steps past ``floor((n - 1) * rate)``. That spreads failures evenly,
so a 10 % error rate is exactly one 500 in every 10 consecutive requests and any test or
demo sees the same ratio on every run. Latency uses a RNG seeded with the pod name.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Prometheus' default client-library buckets: they cover 5 ms .. 10 s, which fits the
# latencies the demo can be told to add.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Series exported from the start (at zero) so that rate() of errors is 0, not "no data",
# until the first failure: a gate must be able to tell "no errors" from "no metrics".
INITIAL_CODES: tuple[str, ...] = ("200", "500")


@dataclass(frozen=True)
class Config:
    """The service's settings, parsed once from the environment."""

    port: int = 8080
    listen_fd: int | None = None
    namespace: str = "default"
    app: str = "demo"
    track: str = ""  # none, as for stable pods: the cluster's labels say the track, not the process
    version: str = "v1"
    pod: str = "demo"
    error_rate: float = 0.0
    latency_ms: tuple[float, float] = (0.0, 0.0)
    crash_after_seconds: float | None = None
    startup_seconds: float = 0.0
    watch_parent: bool = False
    flagd_file: str | None = None
    flags: tuple[str, ...] = ()
    flag_error_rates: Mapping[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Config:
        def text(name: str, default: str) -> str:
            return env.get(name) or default

        rate = float(env.get("ERROR_RATE") or 0.0)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"ERROR_RATE must be between 0 and 1, got {rate}")
        crash = env.get("CRASH_AFTER_SECONDS")
        fd = env.get("LISTEN_FD")
        return cls(
            port=int(env.get("PORT") or 8080),
            listen_fd=int(fd) if fd else None,
            namespace=text("NAMESPACE", "default"),
            app=text("APP", "demo"),
            track=text("TRACK", ""),
            version=text("VERSION", "v1"),
            pod=text("POD", "demo"),
            error_rate=rate,
            latency_ms=parse_latency(env.get("LATENCY_MS") or "0"),
            crash_after_seconds=float(crash) if crash else None,
            startup_seconds=float(env.get("STARTUP_SECONDS") or 0.0),
            watch_parent=(env.get("WATCH_PARENT") or "") == "1",
            flagd_file=env.get("FLAGD_FILE") or None,
            flags=tuple(f.strip() for f in (env.get("FLAGS") or "").split(",") if f.strip()),
            flag_error_rates=parse_flag_error_rates(env.get("FLAG_ERROR_RATE") or ""),
        )


def parse_flag_error_rates(value: str) -> dict[tuple[str, str], float]:
    """``"new-payment:on=0.1"`` -> {("new-payment", "on"): 0.1}."""
    out: dict[tuple[str, str], float] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        key, eq, rate_text = item.partition("=")
        flag, colon, variant = key.partition(":")
        if not (eq and colon and flag and variant):
            raise ValueError(f"FLAG_ERROR_RATE entries are flag:variant=rate, got {item!r}")
        rate = float(rate_text)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"FLAG_ERROR_RATE rate must be between 0 and 1, got {item!r}")
        out[(flag, variant)] = rate
    return out


def defined_variants(path: str, flags: tuple[str, ...]) -> dict[str, list[str]]:
    """The variants each of ``flags`` defines in the flagd file (for series exported at zero)."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return {flag: [] for flag in flags}
    defined = doc.get("flags") if isinstance(doc, dict) else None
    out: dict[str, list[str]] = {}
    for flag in flags:
        entry = defined.get(flag) if isinstance(defined, dict) else None
        variants = entry.get("variants") if isinstance(entry, dict) else None
        out[flag] = sorted(variants) if isinstance(variants, dict) else []
    return out


def parse_latency(value: str) -> tuple[float, float]:
    """``"50"`` -> (50, 50); ``"50-150"`` -> (50, 150), in milliseconds."""
    low, sep, high = value.strip().partition("-")
    lo = float(low)
    hi = float(high) if sep else lo
    if lo < 0 or hi < lo:
        raise ValueError(f"LATENCY_MS must be N or LOW-HIGH with 0 <= LOW <= HIGH, got {value!r}")
    return lo, hi


def is_error(n: int, rate: float) -> bool:
    """Whether request number ``n`` (from 1) fails under an evenly spread error ``rate``."""
    # A small epsilon keeps 0.1 * 10 from landing on 0.9999999 and skipping a failure.
    return math.floor(n * rate + 1e-9) > math.floor((n - 1) * rate + 1e-9)


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class _Series:
    count: int = 0
    total_seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))


class Metrics:
    """Counters and a histogram per status code, rendered in the text exposition format."""

    def __init__(self, config: Config, variants: Mapping[str, list[str]] | None = None) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._series: dict[str, _Series] = {code: _Series() for code in INITIAL_CODES}
        self._requests = 0
        # (flag, variant, code) -> requests; (flag, variant) -> requests numbered for the error pattern
        self._by_flag: dict[tuple[str, str, str], int] = {
            (flag, variant, code): 0
            for flag, names in (variants or {}).items()
            for variant in names
            for code in INITIAL_CODES
        }
        self._variant_requests: dict[tuple[str, str], int] = {}
        # Wall-clock, unlike the service's monotonic start: PromQL compares it with time().
        self.start_time = time.time()

    def next_request_number(self) -> int:
        with self._lock:
            self._requests += 1
            return self._requests

    def next_variant_number(self, flag: str, variant: str) -> int:
        with self._lock:
            n = self._variant_requests.get((flag, variant), 0) + 1
            self._variant_requests[(flag, variant)] = n
            return n

    def observe_flags(self, variants: Mapping[str, str], code: int) -> None:
        with self._lock:
            for flag, variant in variants.items():
                key = (flag, variant, str(code))
                self._by_flag[key] = self._by_flag.get(key, 0) + 1

    def observe(self, code: int, seconds: float) -> None:
        with self._lock:
            series = self._series.setdefault(str(code), _Series())
            series.count += 1
            series.total_seconds += seconds
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    series.buckets[i] += 1

    def render(self) -> str:
        c = self._config
        base = ",".join(
            f'{k}="{escape_label(v)}"'
            for k, v in (
                ("namespace", c.namespace),
                ("app", c.app),
                ("track", c.track),
                ("version", c.version),
                ("pod", c.pod),
            )
            if v
        )
        with self._lock:
            snapshot = {code: (s.count, s.total_seconds, list(s.buckets)) for code, s in self._series.items()}
            by_flag = dict(self._by_flag)
        lines = [
            "# HELP http_requests_total Requests served by the demo service, by status code.",
            "# TYPE http_requests_total counter",
        ]
        for code, (count, _, _) in sorted(snapshot.items()):
            lines.append(f'http_requests_total{{{base},code="{code}"}} {count}')
        lines += [
            "# HELP http_request_duration_seconds Time to answer a request, by status code.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for code, (count, total, buckets) in sorted(snapshot.items()):
            labels = f'{base},code="{code}"'
            for bound, n in zip(BUCKETS, buckets, strict=True):
                lines.append(f'http_request_duration_seconds_bucket{{{labels},le="{format_value(bound)}"}} {n}')
            lines.append(f'http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {count}')
            lines.append(f"http_request_duration_seconds_sum{{{labels}}} {format_value(total)}")
            lines.append(f"http_request_duration_seconds_count{{{labels}}} {count}")
        if by_flag:
            lines += [
                "# HELP http_requests_by_flag_total Requests served, by status code and the variant each flag served.",
                "# TYPE http_requests_by_flag_total counter",
            ]
            for (flag, variant, code), n in sorted(by_flag.items()):
                lines.append(
                    f'http_requests_by_flag_total{{{base},flag="{escape_label(flag)}",'
                    f'variant="{escape_label(variant)}",code="{code}"}} {n}'
                )
        lines += [
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds{{{base}}} {format_value(self.start_time)}",
        ]
        return "\n".join(lines) + "\n"


class Flags:
    """The configured boolean flags, evaluated through the OpenFeature SDK from a flagd file."""

    def __init__(self, path: str, flags: tuple[str, ...]) -> None:
        from openfeature import api
        from openfeature.contrib.provider.flagd import FlagdProvider
        from openfeature.contrib.provider.flagd.config import ResolverType

        self.flags = flags
        api.set_provider(FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=path))
        self._client = api.get_client()

    def ready(self) -> bool:
        from openfeature.provider import ProviderStatus

        return self._client.get_provider_status() == ProviderStatus.READY

    def evaluate(self, user: str) -> dict[str, str]:
        """flag -> the variant served to ``user`` (``unknown`` when the flag cannot be evaluated)."""
        from openfeature.evaluation_context import EvaluationContext

        context = EvaluationContext(targeting_key=user)
        return {
            flag: self._client.get_boolean_details(flag, False, context).variant or "unknown" for flag in self.flags
        }


class DemoService:
    """The service's state: configuration, metrics, start time and the latency RNG."""

    def __init__(self, config: Config) -> None:
        self.config = config
        use_flags = bool(config.flagd_file and config.flags)
        variants = defined_variants(str(config.flagd_file), config.flags) if use_flags else {}
        self.metrics = Metrics(config, variants)
        self.flags = Flags(str(config.flagd_file), config.flags) if use_flags else None
        self.started = time.monotonic()
        self._rng = random.Random(f"{config.namespace}/{config.pod}")
        self._rng_lock = threading.Lock()

    def ready(self) -> bool:
        # Not ready before the flags are loaded: a request served meanwhile would get the coded default.
        if self.flags is not None and not self.flags.ready():
            return False
        return time.monotonic() - self.started >= self.config.startup_seconds

    def latency_seconds(self) -> float:
        lo, hi = self.config.latency_ms
        if hi <= 0:
            return 0.0
        with self._rng_lock:
            return self._rng.uniform(lo, hi) / 1000.0

    def handle_work(self, user: str | None = None) -> int:
        """Serve one ``/`` request: wait the added latency, then succeed or fail by the pattern(s)."""
        start = time.monotonic()
        n = self.metrics.next_request_number()
        failed = is_error(n, self.config.error_rate)
        variants: dict[str, str] = {}
        if self.flags is not None:
            variants = self.flags.evaluate(user or f"request-{n}")
            for flag, variant in variants.items():
                rate = self.config.flag_error_rates.get((flag, variant), 0.0)
                if rate and is_error(self.metrics.next_variant_number(flag, variant), rate):
                    failed = True
        delay = self.latency_seconds()
        if delay:
            time.sleep(delay)
        code = 500 if failed else 200
        self.metrics.observe(code, time.monotonic() - start)
        self.metrics.observe_flags(variants, code)
        return code


def make_handler(service: DemoService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sandbox-demo/1"

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == "/":
                users = urllib.parse.parse_qs(query).get("user")
                code = service.handle_work(users[0] if users else None)
                c = service.config
                body = f"{c.app} {c.version} {c.track} {c.pod}\n" if code == 200 else "injected error\n"
                self._reply(code, body)
            elif path == "/healthz":
                if service.ready():
                    self._reply(200, "ok\n")
                else:
                    self._reply(503, "starting\n")
            elif path == "/metrics":
                self._reply(200, service.metrics.render(), "text/plain; version=0.0.4; charset=utf-8")
            else:
                self._reply(404, "not found\n")

        def _reply(self, code: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            # Access logs at 20 req/s would fill the pod log files with noise.
            pass

    return Handler


def make_server(service: DemoService) -> ThreadingHTTPServer:
    handler = make_handler(service)
    fd = service.config.listen_fd
    if fd is None:
        return ThreadingHTTPServer(("127.0.0.1", service.config.port), handler)
    # The runtime bound the socket before starting us, so the port it recorded cannot be
    # taken by someone else in between.
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=fd)
    host, port = server.socket.getsockname()[:2]
    server.server_address = (host, port)
    server.server_name, server.server_port = str(host), int(port)
    return server


def _exit_later(seconds: float, status: int) -> None:
    def run() -> None:
        time.sleep(seconds)
        print(f"crashing after {seconds:g}s as configured (CRASH_AFTER_SECONDS)", file=sys.stderr, flush=True)
        os._exit(status)

    threading.Thread(target=run, name="crash-after", daemon=True).start()


def _watch_parent() -> None:
    parent = os.getppid()

    def run() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=run, name="watch-parent", daemon=True).start()


def main(env: Mapping[str, str] | None = None) -> int:
    config = Config.from_env(os.environ if env is None else env)
    service = DemoService(config)
    server = make_server(service)
    server.daemon_threads = True
    if config.crash_after_seconds is not None:
        _exit_later(config.crash_after_seconds, 1)
    if config.watch_parent:
        _watch_parent()

    def on_term(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever to return, so it must run off the main thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(
        f"demo service {config.app} {config.version} ({config.track}) pod {config.pod} "
        f"on 127.0.0.1:{server.server_port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
