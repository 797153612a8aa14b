"""Every safety rail refuses what it must, and refusing writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import Client

from orchestrator.activities.chaos import TemporalActiveWork, canary_workflow_id
from orchestrator.chaos.models import Plan
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import prepare
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.errors import RefusedError
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.specs.chaos import ChaosExperiment
from tests.chaos.conftest import deploy, experiment, now, writes
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(60)


async def _prepare(objects: Objects, metrics: PrometheusProvider, client: Client, policy: ChaosPolicy,
                   exp: ChaosExperiment, workflow_id: str | None = None) -> Plan:
    return await prepare(objects=objects, metrics=metrics, active=TemporalActiveWork(client), policy=policy,
                         experiment=exp, run="r-1", now=now(), workflow_id=workflow_id,
                         canary_id=canary_workflow_id)


KILL = {"type": "pod-kill"}


@pytest.fixture
def env(kube: KubeTestEnv, objects: Objects, metrics: PrometheusProvider, temporal_client: Client,
        policy: ChaosPolicy) -> dict[str, Any]:
    return {"objects": objects, "metrics": metrics, "client": temporal_client, "policy": policy}


async def test_a_safe_experiment_passes_every_rail(kube: KubeTestEnv, env: dict[str, Any]) -> None:
    deploy(kube)
    plan = await _prepare(**env, exp=experiment(kube.namespace, KILL))
    assert plan.affected_pods == 1 and plan.total_pods == 4


async def test_opt_in_missing(kube: KubeTestEnv, env: dict[str, Any]) -> None:
    deploy(kube, allow=False)
    kube._audit_start = kube.server.audit_log.last_seq
    with pytest.raises(RefusedError, match="has not opted in"):
        await _prepare(**env, exp=experiment(kube.namespace, KILL))
    assert writes(kube, all_namespaces=True) == []
    # The namespace's own opt-in covers its workloads.
    kube.core.patch_namespace(kube.namespace, {"metadata": {"annotations": {"chaos.orchestrator.dev/allow": "true"}}})
    await _prepare(**env, exp=experiment(kube.namespace, KILL))


@pytest.mark.parametrize("namespace", ["kube-system", "orchestrator"])
async def test_protected_namespace(namespace: str, env: dict[str, Any]) -> None:
    # Even when the operator lists it as allowed.
    env["policy"] = ChaosPolicy(allowed_namespaces=frozenset({namespace}), own_namespace="orchestrator")
    with pytest.raises(RefusedError, match=f"namespace {namespace} is protected"):
        await _prepare(**env, exp=experiment(namespace, KILL))


async def test_namespace_not_allowed(kube: KubeTestEnv, env: dict[str, Any]) -> None:
    deploy(kube)
    env["policy"] = ChaosPolicy(allowed_namespaces=frozenset({"elsewhere"}))
    with pytest.raises(RefusedError, match="not in the allowed namespaces"):
        await _prepare(**env, exp=experiment(kube.namespace, KILL))


async def test_too_many_pods(kube: KubeTestEnv, env: dict[str, Any]) -> None:
    deploy(kube)
    with pytest.raises(RefusedError, match=r"3 of the 4 ready pods of Deployment t-\w+/web \(75%\), "
                                              r"more than blastRadius.maxPodsPercent 50%"):
        await _prepare(**env, exp=experiment(kube.namespace, KILL, mode={"type": "fixed", "value": 3}))
    with pytest.raises(RefusedError, match="more than blastRadius"):
        await _prepare(**env, exp=experiment(kube.namespace, {"type": "scale-down", "replicas": 1}, mode="all",
                                             max_percent=70))


async def test_active_canary_rollout(kube: KubeTestEnv, env: dict[str, Any], temporal_client: Client) -> None:
    deploy(kube)
    # A rollout workflow with the canary id convention, running (no worker polls its queue).
    handle = await temporal_client.start_workflow(
        "CanaryRollout", id=canary_workflow_id(kube.namespace, "web"), task_queue=f"idle-{uuid.uuid4().hex}")
    try:
        with pytest.raises(RefusedError, match=f"canary rollout is active on {kube.namespace}/web"):
            await _prepare(**env, exp=experiment(kube.namespace, KILL))
    finally:
        await handle.terminate()
    await _prepare(**env, exp=experiment(kube.namespace, KILL))


async def test_another_experiment_on_the_same_target(kube: KubeTestEnv, env: dict[str, Any],
                                                     temporal_client: Client) -> None:
    import asyncio

    deploy(kube)
    other = await temporal_client.start_workflow(
        "ChaosExperiment", id=f"chaos-{kube.namespace}-other", task_queue=f"idle-{uuid.uuid4().hex}",
        memo={"namespace": kube.namespace, "selector": {"app": "web"}})
    try:
        for _ in range(50):  # visibility is eventually consistent
            try:
                await _prepare(**env, exp=experiment(kube.namespace, KILL))
            except RefusedError as exc:
                assert f"experiment chaos-{kube.namespace}-other is already running" in str(exc)
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("a running experiment on the same target was not refused")
        # Its own workflow id is not a conflict.
        await _prepare(**env, exp=experiment(kube.namespace, KILL), workflow_id=other.id)
    finally:
        await other.terminate()


async def test_error_budget_below_floor(kube: KubeTestEnv, env: dict[str, Any]) -> None:
    deploy(kube)
    low = {"errorBudget": {"query": 'chaos_test:error_budget_remaining{service="low"}', "floor": 0.25}}
    with pytest.raises(RefusedError, match=r"error budget remaining 0\.1 is below the floor 0\.25"):
        await _prepare(**env, exp=experiment(kube.namespace, KILL, safety=low))
    high = {"errorBudget": {"query": 'chaos_test:error_budget_remaining{service="high"}', "floor": 0.25}}
    plan = await _prepare(**env, exp=experiment(kube.namespace, KILL, safety=high))
    # The reading the rail passed on is kept in the plan: the "before" end of the run's budget burn.
    assert plan.budget is not None and plan.budget.remaining == pytest.approx(0.9)
    assert "error budget remaining 0.9 (floor 0.25)" in plan.lines
    missing = {"errorBudget": {"query": 'chaos_test:error_budget_remaining{service="none"}', "floor": 0.25}}
    with pytest.raises(RefusedError, match="no data"):
        await _prepare(**env, exp=experiment(kube.namespace, KILL, safety=missing))
    missing["errorBudget"]["noData"] = "pass"
    plan = await _prepare(**env, exp=experiment(kube.namespace, KILL, safety=missing))
    assert plan.budget is not None and plan.budget.remaining is None and "no data" in plan.budget.message


async def test_firing_alert(kube: KubeTestEnv, env: dict[str, Any]) -> None:
    deploy(kube)
    firing = {"alerts": {"matchLabels": {"service": "alerting", "severity": "critical"}}}
    with pytest.raises(RefusedError, match=r"alert.*firing for the target: ChaosTestCritical"):
        await _prepare(**env, exp=experiment(kube.namespace, KILL, safety=firing))
    quiet = {"alerts": {"matchLabels": {"service": "web", "severity": "critical"}}}
    await _prepare(**env, exp=experiment(kube.namespace, KILL, safety=quiet))
