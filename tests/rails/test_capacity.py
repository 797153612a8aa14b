"""Capacity headroom: the sandbox admits pods against ResourceQuota and schedules them against node allocatable
like a real cluster, and the rail refuses with numbers before a canary would leave pods Pending or refused."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from orchestrator.rails.capacity import capacity
from orchestrator.rails.cluster import ClusterReader
from orchestrator.rails.models import RailStatus
from tests.fixtures_kube import KubeTestEnv, deployment_manifest
from tests.rails.conftest import canary_spec

pytestmark = pytest.mark.timeout(60)


def deploy(kube: KubeTestEnv, name: str, replicas: int, cpu: str, memory: str = "64Mi") -> None:
    body = deployment_manifest(name, replicas=replicas)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": cpu, "memory": memory}}
    kube.apps.create_namespaced_deployment(kube.namespace, body)
    kube.settle(4)


def quota(kube: KubeTestEnv, hard: dict[str, str]) -> None:
    kube.core.create_namespaced_resource_quota(kube.namespace, {"metadata": {"name": "team"}, "spec": {"hard": hard}})
    kube.settle(1)


def pod(name: str, cpu: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": "demo:1"}
    if cpu is not None:
        container["resources"] = {"requests": {"cpu": cpu, "memory": "64Mi"}}
    return {"metadata": {"name": name}, "spec": {"containers": [container]}}


def test_sandbox_refuses_a_pod_over_quota_with_403_exceeded_quota(kube: KubeTestEnv) -> None:
    quota(kube, {"requests.cpu": "1", "pods": "10"})
    kube.core.create_namespaced_pod(kube.namespace, pod("a", "600m"))
    with pytest.raises(ApiException) as err:
        kube.core.create_namespaced_pod(kube.namespace, pod("b", "600m"))
    assert err.value.status == 403
    assert "exceeded quota: team, requested: requests.cpu=600m, used: requests.cpu=600m, limited: requests.cpu=1" \
        in str(err.value.body)
    with pytest.raises(ApiException) as missing:
        kube.core.create_namespaced_pod(kube.namespace, pod("c", None))
    assert missing.value.status == 403 and "must specify requests.cpu" in str(missing.value.body)
    kube.settle(1)
    status = kube.core.read_namespaced_resource_quota("team", kube.namespace).status
    assert status.used == {"requests.cpu": "600m", "pods": "1"}


def test_sandbox_leaves_a_pod_that_fits_no_node_pending(kube: KubeTestEnv) -> None:
    kube.core.create_namespaced_pod(kube.namespace, pod("huge", "5"))  # nodes have 4 cpu allocatable
    kube.settle(2)
    stored = kube.core.read_namespaced_pod("huge", kube.namespace)
    assert stored.status.phase == "Pending" and not stored.spec.node_name
    assert any(c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
               for c in stored.status.conditions)


def test_a_deployment_over_quota_reports_replica_failure(kube: KubeTestEnv) -> None:
    quota(kube, {"requests.cpu": "1"})
    deploy(kube, "web", replicas=3, cpu="400m")
    dep = kube.apps.read_namespaced_deployment("web", kube.namespace)
    assert len(kube.pods("app=web")) == 2
    failure = [c for c in dep.status.conditions if c.type == "ReplicaFailure"]
    assert failure and failure[0].reason == "FailedCreate" and "exceeded quota" in failure[0].message


def test_capacity_passes_with_its_numbers_when_everything_fits(kube: KubeTestEnv) -> None:
    quota(kube, {"requests.cpu": "2", "requests.memory": "1Gi"})
    deploy(kube, "web", replicas=2, cpu="300m")
    kube.settle(1)
    verdict = capacity(ClusterReader(kube.api_client), canary_spec(kube.namespace, "web", baseline=True,
                                                                   weights=(50, 100)))
    assert verdict.status is RailStatus.OK, verdict.reason
    assert "quota team requests.cpu: canary 2 + baseline 2 pods need 1200m, free 1400m" in verdict.reason
    assert "need 256Mi, free 896Mi (hard 1024Mi, used 128Mi)" in verdict.reason
    assert "all 4 fit on 2 node(s)" in verdict.reason


def test_capacity_quota_numbers(kube: KubeTestEnv) -> None:
    quota(kube, {"requests.cpu": "1500m"})
    deploy(kube, "web", replicas=2, cpu="300m")
    kube.settle(1)
    spec = canary_spec(kube.namespace, "web", baseline=True, weights=(50, 100))
    verdict = capacity(ClusterReader(kube.api_client), spec)
    assert verdict.status is RailStatus.REFUSED
    assert verdict.reason.startswith(
        "quota team requests.cpu: canary 2 + baseline 2 pods need 1200m, free 900m (hard 1500m, used 600m)")
    ok = capacity(ClusterReader(kube.api_client), canary_spec(kube.namespace, "web", canary_replicas=1))
    assert ok.status is RailStatus.OK and "need 300m, free 900m" in ok.reason


def test_capacity_refuses_when_the_pods_would_stay_pending(kube: KubeTestEnv) -> None:
    deploy(kube, "big", replicas=2, cpu="1500m")  # one per node: 2.5 cpu left on each of the two nodes
    verdict = capacity(ClusterReader(kube.api_client), canary_spec(kube.namespace, "big", canary_replicas=6))
    assert verdict.status is RailStatus.REFUSED, verdict.reason
    assert "of 6 canary pod(s) would stay Pending (requests cpu 1500m" in verdict.reason
    assert "sandbox-node-1: cpu" in verdict.reason
    assert capacity(ClusterReader(kube.api_client), canary_spec(kube.namespace, "big", canary_replicas=1)).status \
        is RailStatus.OK


def test_capacity_refuses_a_missing_target_rather_than_failing(kube: KubeTestEnv) -> None:
    verdict = capacity(ClusterReader(kube.api_client), canary_spec(kube.namespace, "ghost"))
    assert verdict.status is RailStatus.REFUSED
    assert verdict.reason == f"Deployment {kube.namespace}/ghost not found: nothing to copy"
