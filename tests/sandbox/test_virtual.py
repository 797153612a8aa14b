"""The virtual-pods load mode: pods without processes, one exporter, the real Prometheus.

One API server with the ``VirtualPods`` runtime, reached through the official kubernetes client; the
synthetic exporter scraped by the real ``prometheus`` binary. The scale benchmark relies on three
things checked here: pods still pass through "not ready", series carry the pod's own labels (so the
stable side has no ``track``), and a canary's ``ERROR_RATIO`` is what a gate's query measures.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from orchestrator.sandbox.apiserver import ApiServer
from orchestrator.sandbox.virtual import SyntheticExporter, VirtualPods, VirtualPrometheus, add_nodes
from tests.fixtures_temporal import free_port

NS = "virtual"


def eventually(check: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


def deployment(name: str, replicas: int, labels: dict[str, str], env: dict[str, str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "registry.local/shop:v1"}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


@dataclass
class Cluster:
    server: ApiServer
    api: client.ApiClient
    pods: VirtualPods
    exporter_port: int


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # The controller is driven by hand (reconcile_once), so each test sees the states it asserts.
    pods = VirtualPods(ready_after=2.0)
    exporter = SyntheticExporter(pods).start()
    tmp = tmp_path_factory.mktemp("virtual")
    with ApiServer(runtime=pods, controller=False) as server:
        api = config.new_client_from_config(str(server.write_kubeconfig(tmp / "kubeconfig")))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        yield Cluster(server, api, pods, exporter.port)
        api.close()
    exporter.stop()


def ready_pods(api: client.ApiClient, selector: str) -> list[str]:
    items = client.CoreV1Api(api).list_namespaced_pod(NS, label_selector=selector).items
    return [p.metadata.name for p in items
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def test_pods_are_unready_until_their_delay_then_ready_without_a_process(cluster: Cluster) -> None:
    server, api, pods = cluster.server, cluster.api, cluster.pods
    client.AppsV1Api(api).create_namespaced_deployment(NS, deployment("cart", 2, {"app": "cart"}))
    server.reconcile_once()
    assert len(client.CoreV1Api(api).list_namespaced_pod(NS, label_selector="app=cart").items) == 2
    assert ready_pods(api, "app=cart") == []
    assert 'app="cart"' not in pods.exposition()  # a pod that is not ready serves nothing yet
    time.sleep(2.1)
    server.reconcile_once()
    assert len(ready_pods(api, "app=cart")) == 2
    status = client.AppsV1Api(api).read_namespaced_deployment("cart", NS).status
    assert status.available_replicas == 2


def test_deleted_pods_leave_the_exporter(cluster: Cluster) -> None:
    server, api, pods = cluster.server, cluster.api, cluster.pods
    client.AppsV1Api(api).create_namespaced_deployment(NS, deployment("gone", 1, {"app": "gone"}))
    server.reconcile_once()
    time.sleep(2.1)
    assert 'app="gone"' in pods.exposition()
    client.AppsV1Api(api).delete_namespaced_deployment("gone", NS)
    server.reconcile_once()
    server.reconcile_once()
    assert 'app="gone"' not in pods.exposition()


def test_prometheus_measures_each_side_from_the_pods_own_labels(cluster: Cluster, tmp_path: Path) -> None:
    server, api = cluster.server, cluster.api
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(NS, deployment("shop", 2, {"app": "shop"}))
    apps.create_namespaced_deployment(NS, deployment(
        "shop-canary", 1, {"app": "shop", "track": "canary"}, env={"ERROR_RATIO": "0.25"}))
    server.reconcile_once()
    time.sleep(2.1)
    server.reconcile_once()
    assert len(ready_pods(api, "app=shop")) == 3
    prom = VirtualPrometheus(tmp_path, cluster.exporter_port, port=free_port(), scrape_interval=2.0)
    process = prom.start()
    try:
        prom.wait_ready(60, process)

        def query(q: str) -> list[dict[str, Any]]:
            url = f"{prom.url}/api/v1/query?query={urllib.parse.quote(q)}"
            with urllib.request.urlopen(url, timeout=10) as resp:
                return list(json.load(resp)["data"]["result"])

        ratio = ('sum(rate(http_requests_total{{namespace="{ns}",app="shop",{sel},code=~"5.."}}[20s])) / '
                 'sum(rate(http_requests_total{{namespace="{ns}",app="shop",{sel}}}[20s]))')
        canary = eventually(lambda: query(ratio.format(ns=NS, sel='track="canary"')))
        assert canary and float(canary[0]["value"][1]) == pytest.approx(0.25, abs=1e-3)
        stable = query(ratio.format(ns=NS, sel='track=""'))
        assert stable and float(stable[0]["value"][1]) == 0.0
        series = query(f'http_requests_total{{namespace="{NS}",app="shop",code="200"}}')
        by_pod = {s["metric"]["pod"]: s["metric"] for s in series}
        assert len(by_pod) == 3
        assert sorted(m.get("track", "") for m in by_pod.values()) == ["", "", "canary"]
        assert all("pod_template_hash" in m and "exported_namespace" not in m for m in by_pod.values())
        p95 = query(f'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket'
                    f'{{namespace="{NS}",app="shop",track="canary"}}[20s])))')
        assert 0.0 < float(p95[0]["value"][1]) <= 0.1  # the default 50 ms, in the first bucket
    finally:
        process.terminate()
        process.wait(10)


def test_the_cluster_grows_by_nodes_like_the_first(cluster: Cluster) -> None:
    # Two nodes of 110 pods hold under a hundred rollouts; the benchmark adds nodes instead of lifting the limit.
    add_nodes(cluster.server, 4)
    nodes = client.CoreV1Api(cluster.api).list_node().items
    assert sorted(n.metadata.name for n in nodes) == [f"sandbox-node-{i}" for i in range(1, 5)]
    assert {n.status.allocatable["pods"] for n in nodes} == {"110"}
    assert {n.metadata.labels["kubernetes.io/hostname"] for n in nodes} == {n.metadata.name for n in nodes}
