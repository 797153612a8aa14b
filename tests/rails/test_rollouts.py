"""Recent deployments: a rollout of a target workload by anyone, seen from the cluster, within the quiet period."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.rails.cluster import ClusterReader
from orchestrator.rails.models import RailStatus, RailTarget
from orchestrator.rails.rollouts import recent_deployments
from tests.fixtures_kube import KubeTestEnv, deployment_manifest
from tests.rails.conftest import policy

pytestmark = pytest.mark.timeout(60)


def setup(kube: KubeTestEnv) -> RailTarget:
    kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest("web", replicas=2))
    kube.settle(4)
    return RailTarget(namespace=kube.namespace, app="web", selector={"app": "web"})


def test_a_rollout_by_anyone_within_the_quiet_period_refuses(kube: KubeTestEnv) -> None:
    target = setup(kube)
    # Someone else rolls out a new image (kubectl set image, a CD system...).
    kube.apps.patch_namespaced_deployment("web", kube.namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "app", "image": "demo:2"}]}}}})
    kube.settle(4)
    verdict = recent_deployments(ClusterReader(kube.api_client), policy().spec, "chaos", target, datetime.now(UTC))
    assert verdict.status is RailStatus.REFUSED
    assert f"Deployment {kube.namespace}/web rolled out" in verdict.reason
    assert "within the quiet period of 30m" in verdict.reason


def test_a_rollout_in_progress_refuses(kube: KubeTestEnv) -> None:
    target = setup(kube)
    with kube.server.controller.paused():
        kube.apps.patch_namespaced_deployment("web", kube.namespace, {"spec": {"template": {"spec": {
            "containers": [{"name": "app", "image": "demo:3"}]}}}})
        verdict = recent_deployments(ClusterReader(kube.api_client), policy().spec, "chaos", target,
                                     datetime.now(UTC))
    assert verdict.status is RailStatus.REFUSED
    assert "is rolling out now (generation 2 not yet observed" in verdict.reason


def test_a_new_replicaset_counts_as_a_rollout(kube: KubeTestEnv) -> None:
    target = setup(kube)
    dep = kube.apps.read_namespaced_deployment("web", kube.namespace)
    p = policy(recentDeployments={"quietPeriod": "2s"}).spec
    time.sleep(2.2)
    assert recent_deployments(ClusterReader(kube.api_client), p, "chaos", target, datetime.now(UTC)).status \
        is RailStatus.OK
    rs = deployment_manifest("web-5d8f9", replicas=0)
    rs.update({"apiVersion": "apps/v1", "kind": "ReplicaSet"})
    rs["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                          "uid": dep.metadata.uid, "controller": True}]
    kube.apps.create_namespaced_replica_set(kube.namespace, rs)
    verdict = recent_deployments(ClusterReader(kube.api_client), p, "chaos", target, datetime.now(UTC))
    assert verdict.status is RailStatus.REFUSED and "ReplicaSet web-5d8f9 created" in verdict.reason


def test_passes_once_the_quiet_period_is_over_and_says_how_long_ago(kube: KubeTestEnv) -> None:
    target = setup(kube)
    p = policy(recentDeployments={"quietPeriod": "30m"}).spec
    later = datetime.now(UTC) + timedelta(minutes=31)
    verdict = recent_deployments(ClusterReader(kube.api_client), p, "chaos", target, later)
    assert verdict.status is RailStatus.OK
    assert f"Deployment {kube.namespace}/web last rolled out 31m" in verdict.reason


def test_quiet_period_zero_and_other_kinds_skip(kube: KubeTestEnv) -> None:
    target = setup(kube)
    now = datetime.now(UTC)
    zero = policy(recentDeployments={"quietPeriod": "0s"}).spec
    assert recent_deployments(ClusterReader(kube.api_client), zero, "chaos", target, now).status is RailStatus.SKIPPED
    assert recent_deployments(ClusterReader(kube.api_client), policy().spec, "canary", target, now).status \
        is RailStatus.SKIPPED
