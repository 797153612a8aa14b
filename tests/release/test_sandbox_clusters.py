"""``sandbox up --clusters N``: N independent clusters, each with its own API server and Prometheus.

Given a two-cluster sandbox (no workers, to keep it light), then the clusters answer on different
ports with different objects, each has its own Prometheus, the operator settings name both with
their default queues, and ``down`` (the fixture's teardown) stops every process it started.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from orchestrator.kube.client import load_api_client
from orchestrator.sandbox import manager
from orchestrator.sandbox.runtime import pid_alive
from orchestrator.specs.operator import load_operator_settings
from tests.fixtures_kube import deployment_manifest
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, manager.SandboxInfo]]:
    state_dir = tmp_path_factory.mktemp("fleet-sandbox")
    info = manager.up(state_dir, temporal_port=free_port(), ui_port=free_port(), api_port=free_port(),
                      prometheus_port=free_port(), clusters=2)
    pids = [c.pid for c in info.components]
    try:
        yield state_dir, info
    finally:
        stopped = manager.down(state_dir)
    log = state_dir / "clusters" / "sandbox-2" / "logs" / "cluster.log"
    assert any(s.startswith("cluster-sandbox-2") for s in stopped), (stopped, log.read_text()[-2000:])
    assert any(s.startswith("prometheus-sandbox-2") for s in stopped), stopped
    assert not alive(pids), f"down left {alive(pids)} running"



def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if pid_alive(pid)]  # a zombie not reaped yet is not running

def test_each_cluster_is_its_own_api_server_and_prometheus(sandbox: tuple[Path, manager.SandboxInfo]) -> None:
    state_dir, info = sandbox
    assert [c.name for c in info.clusters] == ["sandbox-1", "sandbox-2"]
    first, second = info.clusters
    assert first.kube_api_url == info.kube_api_url and second.kube_api_url != info.kube_api_url
    assert first.prometheus_url == info.prometheus_url and second.prometheus_url != info.prometheus_url
    apis = [client.AppsV1Api(load_api_client(c.kubeconfig)) for c in info.clusters]
    for api in apis:
        client.CoreV1Api(api.api_client).create_namespace({"metadata": {"name": "demo"}})
    apis[1].create_namespaced_deployment("demo", deployment_manifest("only-in-2", replicas=1))
    assert [d.metadata.name for d in apis[1].list_namespaced_deployment("demo").items] == ["only-in-2"]
    assert apis[0].list_namespaced_deployment("demo").items == [], "the clusters share no objects"
    operator = load_operator_settings(Path(info.state_dir) / "operator.yaml")
    assert operator.cluster_queues() == {"sandbox-1": "orchestrator-sandbox-1", "sandbox-2": "orchestrator-sandbox-2"}
    names = {c.name for c in manager.status(state_dir).components if c.alive}
    assert {"cluster-sandbox-2", "prometheus-sandbox-2", "cluster", "prometheus", "temporal"} <= names

