"""Shared pieces of the rails suites: a real Prometheus with backfilled alerts and health series, a policy
builder, the ``Rails`` under test wired to the sandbox API server, that Prometheus and the real Temporal.

Prometheus data (``promtool tsdb create-blocks-from openmetrics``, from an hour ago to two hours ahead, so
queries at "now" answer without waiting for scrapes)::

    ALERTS{alertname="CheckoutDown", alertstate="firing", severity="critical", app="checkout"}   1
    ALERTS{alertname="CartLatencyHigh", alertstate="firing", severity="warning", app="cart"}    1
    slo:burn_rate1h{app="checkout"} 3.2     slo:burn_rate1h{app="cart"} 0.4
    slo:burn_rate1h{app="payments"} 6.0     (a dependency of cart in the tests' policies)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from orchestrator.config import PrometheusSettings
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.rails.active import TemporalActiveWork
from orchestrator.rails.run import Rails
from orchestrator.specs.policy import RailsPolicy
from tests.fixtures_kube import KubeTestEnv
from tests.fixtures_prom import _binary, _wait_ready
from tests.fixtures_temporal import free_port

WRITES = {"create", "update", "patch", "delete", "deletecollection"}

SERIES = [
    ("ALERTS", {"alertname": "CheckoutDown", "alertstate": "firing", "severity": "critical", "app": "checkout"}, 1.0),
    ("ALERTS", {"alertname": "CartLatencyHigh", "alertstate": "firing", "severity": "warning", "app": "cart"}, 1.0),
    ("slo:burn_rate1h", {"app": "checkout"}, 3.2),
    ("slo:burn_rate1h", {"app": "cart"}, 0.4),
    ("slo:burn_rate1h", {"app": "payments"}, 6.0),
]


def _openmetrics(start: datetime, end: datetime, step: int = 15) -> str:
    lines: list[str] = []
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, labels, value in SERIES:
        families.setdefault(name, []).append((labels, value))
    for name, series in families.items():
        lines.append(f"# TYPE {name} gauge")
        for labels, value in series:
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            t = start
            while t <= end:
                lines.append(f"{name}{{{text}}} {value} {t.timestamp():.0f}")
                t += timedelta(seconds=step)
    return "\n".join(lines) + "\n# EOF\n"


@dataclass(frozen=True)
class RailsProm:
    url: str


@pytest.fixture(scope="session")
def rails_prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RailsProm]:
    root = tmp_path_factory.mktemp("prom-rails")
    now = datetime.now(UTC).replace(microsecond=0)
    source = root / "rails.om"
    source.write_text(_openmetrics(now - timedelta(hours=1), now + timedelta(hours=2)))
    result = subprocess.run([_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source),
                             str(root / "data")], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"promtool failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    (root / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_binary("prometheus"), f"--storage.tsdb.path={root / 'data'}", "--storage.tsdb.retention.time=20y",
             f"--web.listen-address=127.0.0.1:{port}", f"--config.file={root / 'prometheus.yml'}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_ready(url, process, log)
        yield RailsProm(url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def metrics(rails_prom: RailsProm) -> PrometheusProvider:
    return PrometheusProvider(PrometheusSettings(url=rails_prom.url))


def policy(**spec: Any) -> RailsPolicy:
    return RailsPolicy.model_validate({"kind": "RailsPolicy", "metadata": {"name": "test"}, "spec": spec})


@pytest.fixture
def make_rails(kube: KubeTestEnv, metrics: PrometheusProvider, temporal_client: Client) -> Any:
    def make(p: RailsPolicy | None = None) -> Rails:
        return Rails(api_client=kube.api_client, metrics=metrics, active=TemporalActiveWork(temporal_client),
                     policy=p or policy(), env={"ORCHESTRATOR_NAMESPACE": "orchestrator"})

    return make


def canary_spec(namespace: str, deployment: str, *, baseline: bool = False, canary_replicas: int | None = None,
                weights: tuple[int, ...] = (50,)) -> Any:
    from orchestrator.specs.canary import CanaryRollout

    spec: dict[str, Any] = {
        "target": {"namespace": namespace, "deployment": deployment},
        "change": {"image": "demo:2"},
        "baseline": baseline,
        "steps": [{"setWeight": w} for w in weights],
    }
    if canary_replicas is not None:
        spec["canaryReplicas"] = canary_replicas
    return CanaryRollout.model_validate({"kind": "CanaryRollout", "metadata": {"name": deployment}, "spec": spec})


def writes(kube: KubeTestEnv) -> list[tuple[str, str, str | None]]:
    return [(e["verb"], e.get("resource") or "", e.get("name")) for e in kube.audit(all_namespaces=True)
            if e.get("verb") in WRITES]


def write_policy(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
