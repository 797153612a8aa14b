"""A real Prometheus over history written with ``promtool tsdb create-blocks-from openmetrics``.

Each series is a request counter whose per-second rate of 5xx changes at a known time, so a test
knows exactly at which look a gate must fail. Series are labelled as on a real cluster: canary pods
carry ``track="canary"``, stable pods no track at all; the ``legacy`` app predates that and tells
its sides apart by ``version`` only.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures_temporal import free_port

T0 = datetime(2025, 3, 4, 10, 0, tzinfo=UTC)
LENGTH = timedelta(hours=1)
STEP = 15
REGRESSION_AT = T0 + timedelta(minutes=20)
RPS = 10.0


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    error_before: float
    error_after: float


SERIES = [
    # app "checkout": the canary breaks at REGRESSION_AT (0.5 % -> 20 % errors); the stable stays clean.
    Series({"namespace": "shop", "app": "checkout", "track": "canary"}, 0.005, 0.20),
    Series({"namespace": "shop", "app": "checkout"}, 0.005, 0.005),
    # app "steady": nothing happens.
    Series({"namespace": "shop", "app": "steady", "track": "canary"}, 0.005, 0.005),
    Series({"namespace": "shop", "app": "steady"}, 0.005, 0.005),
    # app "legacy": no track label; v2 breaks at REGRESSION_AT.
    Series({"namespace": "shop", "app": "legacy", "version": "v2"}, 0.004, 0.08),
    Series({"namespace": "shop", "app": "legacy", "version": "v1"}, 0.004, 0.004),
]


def openmetrics() -> Iterator[str]:
    t0, tr = int(T0.timestamp()), int(REGRESSION_AT.timestamp())
    yield "# TYPE http_requests counter"
    for s in SERIES:
        for code, share_before, share_after in (("200", 1 - s.error_before, 1 - s.error_after),
                                                ("500", s.error_before, s.error_after)):
            labels = ",".join(f'{k}="{v}"' for k, v in {**s.labels, "code": code}.items())
            for t in range(t0, t0 + int(LENGTH.total_seconds()) + 1, STEP):
                value = RPS * share_before * (min(t, tr) - t0) + RPS * share_after * max(0, t - tr)
                yield f"http_requests_total{{{labels}}} {value:.6f} {t}"
    yield "# EOF"


def binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        pytest.fail(f"{name} is missing: apt-get install -y prometheus")
    return found


def start_prometheus(root: Path, backfill: bool = True) -> tuple[str, subprocess.Popen[bytes]]:
    data = root / "data"
    if backfill:
        source = root / "history.om"
        source.write_text("\n".join(openmetrics()) + "\n")
        subprocess.run([binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                       check=True, capture_output=True)
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary("prometheus"), f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=20y",
         f"--web.listen-address=127.0.0.1:{port}", f"--config.file={config}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, (root / "prometheus.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return url, proc
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail("prometheus did not become ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, proc = start_prometheus(tmp_path_factory.mktemp("history"))
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, proc = start_prometheus(tmp_path_factory.mktemp("empty"), backfill=False)
    try:
        yield url
    finally:
        stop(proc)
