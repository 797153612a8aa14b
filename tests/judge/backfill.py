"""Shared by the judge's end-to-end tests: per-pod counter history backfilled into a real Prometheus.

``openmetrics`` writes per-pod, per-look requests and errors as cumulative counters (OpenMetrics text with
timestamps); ``prometheus`` turns that text into blocks with ``promtool tsdb create-blocks-from openmetrics``
and serves them on 127.0.0.1 until the block ends, waiting for ``/-/ready`` (a condition, not a time).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures_temporal import free_port


def binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        pytest.fail(f"{name} is missing: apt-get install -y prometheus")
    return found


def openmetrics(n: np.ndarray, e: np.ndarray, *, app: str, start: datetime, step: int,
                metric: str = "http_requests_total") -> Iterator[str]:
    """Pods x looks of requests ``n`` and errors ``e`` as cumulative counters, one reading per look (code 200
    and 500, labels ``app`` and ``pod``), without the final ``# EOF`` (``prometheus`` adds it)."""
    ts0 = int(start.timestamp())
    for pod in range(n.shape[0]):
        cn, ce = np.cumsum(n[pod]), np.cumsum(e[pod])
        for code, values in (("200", cn - ce), ("500", ce)):
            name = f'{metric}{{app="{app}",pod="{app}-{pod}",code="{code}"}}'
            for look, value in enumerate(values):
                yield f"{name} {value} {ts0 + step * (look + 1)}"


@contextmanager
def prometheus(root: Path, lines: Iterable[str]) -> Iterator[str]:
    """A real Prometheus serving the backfilled ``lines`` (one counter family ``http_requests``); its URL."""
    with serve_openmetrics(root, ["# TYPE http_requests counter", *lines, "# EOF"]) as url:
        yield url


@contextmanager
def serve_openmetrics(root: Path, lines: Iterable[str]) -> Iterator[str]:
    """A real Prometheus serving a whole OpenMetrics text (its ``# TYPE`` lines and ``# EOF`` included); its URL."""
    store, source = root / "data", root / "history.om"
    source.write_text("\n".join(lines) + "\n")
    subprocess.run([binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(store)],
                   check=True, capture_output=True)  # fmt: skip
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary("prometheus"), f"--storage.tsdb.path={store}", "--storage.tsdb.retention.time=20y",
         f"--web.listen-address=127.0.0.1:{port}", f"--config.file={root / 'prometheus.yml'}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"prometheus did not start: {(root / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
