"""Shared pieces of the chaos suites: experiments built in code, opted-in Deployments, audit helpers."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrator.chaos.models import ALLOW_ANNOTATION
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.config import PrometheusSettings, Settings
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.specs.chaos import ChaosExperiment
from tests.fixtures_kube import KubeTestEnv, deployment_manifest
from tests.fixtures_prom import _binary, _wait_ready
from tests.fixtures_temporal import free_port

WRITES = {"create", "update", "patch", "delete", "deletecollection"}


def experiment(
    namespace: str,
    fault: dict[str, Any],
    *,
    name: str = "exp",
    app: str = "web",
    mode: Any = "one",
    duration: str = "3s",
    checks: list[dict[str, Any]] | None = None,
    max_percent: int = 50,
    safety: dict[str, Any] | None = None,
    recover_within: str = "10s",
    detect_within: str | None = None,
    seed: int | None = 7,
) -> ChaosExperiment:
    target: dict[str, Any] = {"namespace": namespace, "selector": {"app": app}, "mode": mode}
    if seed is not None:
        target["seed"] = seed
    steady: dict[str, Any] = {
        "checks": checks or [{"name": "up", "query": "vector(1)", "condition": {"min": 1},
                              "interval": "1s", "count": 1}],
        "recoverWithin": recover_within,
    }
    if detect_within is not None:
        steady["detectWithin"] = detect_within
    return ChaosExperiment.model_validate({
        "apiVersion": "orchestrator.dev/v1",
        "kind": "ChaosExperiment",
        "metadata": {"name": name},
        "spec": {
            "target": target,
            "fault": fault,
            "duration": duration,
            "steadyState": steady,
            "blastRadius": {"maxPodsPercent": max_percent},
            "safety": safety or {},
        },
    })


def deploy(kube: KubeTestEnv, name: str = "web", replicas: int = 4, allow: bool = True,
           max_unavailable: int | str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    body = deployment_manifest(name, replicas=replicas, labels=labels)
    if max_unavailable is not None:
        body["spec"]["strategy"] = {"type": "RollingUpdate",
                                    "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": 1}}
    if allow:
        body["metadata"]["annotations"] = {ALLOW_ANNOTATION: "true"}
    created = kube.apps.create_namespaced_deployment(kube.namespace, body)
    kube.settle(4)
    assert len(kube.pods(f"app={name}")) == replicas
    return dict(kube.api_client.sanitize_for_serialization(created))


def writes(kube: KubeTestEnv, all_namespaces: bool = False) -> list[tuple[str, str, str | None, str | None]]:
    """(verb, resource, subresource, name) of every write this test made, in order."""
    return [
        (e["verb"], e.get("resource") or "", e.get("subresource"), e.get("name"))
        for e in kube.audit(all_namespaces=all_namespaces)
        if e.get("verb") in WRITES and e.get("code", 500) < 400
    ]


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def objects(kube: KubeTestEnv) -> Objects:
    return Objects(kube.api_client)


@pytest.fixture
def policy(kube: KubeTestEnv) -> ChaosPolicy:
    return ChaosPolicy(allowed_namespaces=frozenset({kube.namespace}))


# ---- a real Prometheus whose rules produce what the rails read ------------------------------------

RULES = """
groups:
  - name: chaos-test
    interval: 1s
    rules:
      - alert: ChaosTestCritical
        expr: vector(1)
        labels: {service: alerting, severity: critical}
      - record: chaos_test:error_budget_remaining
        expr: label_replace(vector(0.1), "service", "low", "", "")
      - record: chaos_test:error_budget_remaining
        expr: label_replace(vector(0.9), "service", "high", "", "")
"""


@dataclass(frozen=True)
class PromRules:
    url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.load(response)["data"]["result"])


@pytest.fixture(scope="session")
def prom_rules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PromRules]:
    """Prometheus evaluating RULES every second: a firing critical alert and two error-budget series."""
    root = tmp_path_factory.mktemp("prom-chaos")
    (root / "rules.yml").write_text(RULES)
    (root / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [_binary("prometheus"), f"--storage.tsdb.path={root / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", f"--config.file={root / 'prometheus.yml'}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        _wait_ready(url, process, log)
        prom = PromRules(url)
        deadline = time.monotonic() + 30
        while not (prom.query('ALERTS{alertstate="firing"}') and prom.query("chaos_test:error_budget_remaining")):
            if time.monotonic() > deadline:
                pytest.fail("the chaos test rules did not evaluate within 30s")
            time.sleep(0.2)
        yield prom
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def metrics(prom_rules: PromRules) -> PrometheusProvider:
    return PrometheusProvider(PrometheusSettings(url=prom_rules.url))


@pytest.fixture
def settings(prom_rules: PromRules, kube: KubeTestEnv, temporal_address: str, tmp_path: Path) -> Settings:
    return Settings(
        temporal_address=temporal_address, prometheus=PrometheusSettings(url=prom_rules.url),
        kubeconfig=str(kube.kubeconfig), db_path=str(tmp_path / "runs.db"),
    )


CHAOS_MESH_KINDS = (("networkchaos", "NetworkChaos"), ("stresschaos", "StressChaos"), ("iochaos", "IOChaos"))


@pytest.fixture
def chaos_mesh(kube: KubeTestEnv) -> Iterator[None]:
    """The Chaos Mesh CRDs the faults need. The sandbox stores the resources and acts on none of them."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(kube.api_client)
    names = []
    for plural, kind in CHAOS_MESH_KINDS:
        name = f"{plural}.chaos-mesh.org"
        try:
            ext.create_custom_resource_definition({
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": name},
                "spec": {"group": "chaos-mesh.org", "scope": "Namespaced",
                         "names": {"plural": plural, "kind": kind, "singular": plural},
                         "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                                       "schema": {"openAPIV3Schema": {
                                           "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
            })
        except ApiException as exc:
            if exc.status != 409:
                raise
        names.append(name)
    yield
    for name in names:
        ext.delete_custom_resource_definition(name)
