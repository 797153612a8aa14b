"""The canary workflow end to end: real Temporal, real Prometheus, the sandbox Kubernetes API.

Given a stable Deployment and Prometheus data for its app (see tests/fixtures_prom.py:
``healthy`` canaries serve 0.5 % errors, ``broken`` ones 10 %, ``nodata`` ones nothing),
when a rollout runs, then the cluster ends in the state the outcome promises.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from orchestrator.api.canary import ControlRequest, Phase
from tests.canary.helpers import (
    deployment,
    error_check,
    image_of,
    rollout,
    running_worker,
    settings_for,
    start,
    wait_for,
)
from tests.fixtures_kube import deployment_manifest
from workflows.canary import CanaryWorkflow

pytestmark = pytest.mark.timeout(120)


def make_stable(kube: Any, name: str, replicas: int = 3) -> None:
    k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(
        kube.namespace, deployment_manifest(name, replicas=replicas, image="demo:1")
    )


def assert_rolled_back(kube: Any, name: str, replicas: int = 3) -> None:
    stable = deployment(kube.api_client, kube.namespace, name)
    assert stable is not None
    assert image_of(stable) == "demo:1", "the stable template must be untouched by a rollback"
    assert stable.spec.replicas == replicas
    assert deployment(kube.api_client, kube.namespace, f"{name}-canary") is None


async def test_healthy_canary_walks_every_step_and_is_promoted(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [
        {"setWeight": 34},
        {"analysis": {"checks": [error_check(count=2)]}},
        {"setWeight": 67},
        {"pause": {"duration": "1s"}},
    ])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        result = await handle.result()

    assert result.phase == Phase.PROMOTED, result.reason
    assert result.step == 4
    [gate] = result.gates
    assert gate.check == "error-rate" and gate.phase.value == "successful"
    assert gate.last is not None and gate.last.value is not None and 0.004 < gate.last.value < 0.006
    assert 'app="healthy"' in gate.last.query and 'track="canary"' in gate.last.query
    stable = deployment(kube.api_client, kube.namespace, "healthy")
    assert stable is not None and image_of(stable) == "demo:2"
    assert stable.spec.replicas == 3, "all traffic (all replicas) back on the stable Deployment"
    assert deployment(kube.api_client, kube.namespace, "healthy-canary") is None
    weights = [e.message for e in result.events if e.message.startswith("shifting")]
    assert weights == ["shifting 34% of traffic to the canary", "shifting 67% of traffic to the canary"]

    # Determinism guard: the recorded history replays against the current workflow code.
    history = await handle.fetch_history()
    await Replayer(workflows=[CanaryWorkflow], data_converter=pydantic_data_converter).replay_workflow(history)


async def test_canary_breaking_its_error_threshold_is_rolled_back_with_the_verdict(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "broken")
    spec = rollout(kube.namespace, "broken", [
        {"setWeight": 34},
        {"analysis": {"checks": [error_check(count=3)]}},
        {"setWeight": 100},
    ])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        result = await handle.result()

    assert result.phase == Phase.ROLLED_BACK
    assert result.decisive_gate is not None and result.decisive_gate.check == "error-rate"
    assert result.decisive_gate.last is not None and result.decisive_gate.last.value is not None
    assert 0.09 < result.decisive_gate.last.value < 0.11
    assert "error-rate" in (result.reason or "")
    assert result.weight == 0 and result.weight_zero_at is not None
    assert_rolled_back(kube, "broken")


async def test_a_check_with_no_data_fails_closed(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "nodata")
    spec = rollout(kube.namespace, "nodata", [
        {"setWeight": 34},
        # The series never appears: after waitForData the check's noData policy (fail) applies.
        {"analysis": {"checks": [error_check(count=2, failureLimit=1, waitForData="2s")]}},
    ])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        result = await (await start(temporal_client, spec, task_queue)).result()

    assert result.phase == Phase.ROLLED_BACK
    assert result.decisive_gate is not None and result.decisive_gate.failures == 2
    assert "no data" in (result.decisive_gate.last.message if result.decisive_gate.last else "")
    assert_rolled_back(kube, "nodata")


async def test_a_failing_background_check_rolls_back_during_a_pause(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "broken")
    spec = rollout(kube.namespace, "broken", [{"setWeight": 34}, {"pause": {"duration": "5m"}}],
                   backgroundChecks=[error_check(name="bg-errors", count=None)])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        result = await (await start(temporal_client, spec, task_queue)).result()

    assert result.phase == Phase.ROLLED_BACK
    assert result.decisive_gate is not None and result.decisive_gate.check == "bg-errors"
    assert_rolled_back(kube, "broken")


async def test_abort_mid_rollout_rolls_back(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [{"setWeight": 34}, {"pause": {"duration": "5m"}}, {"setWeight": 100}])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.step == 1 and s.weight == 34)
        canary = deployment(kube.api_client, kube.namespace, "healthy-canary")
        assert canary is not None and image_of(canary) == "demo:2" and canary.spec.replicas == 1
        await handle.execute_update("abort", ControlRequest(reason="looks wrong", by="sre"))
        result = await handle.result()

    assert result.phase == Phase.ABORTED
    assert "looks wrong" in (result.reason or "")
    assert_rolled_back(kube, "healthy")


async def test_promote_skips_the_remaining_steps(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [{"setWeight": 34}, {"pause": {"duration": "5m"}}, {"setWeight": 67}])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.step == 1)
        await handle.execute_update("promote", ControlRequest())
        result = await handle.result()

    assert result.phase == Phase.PROMOTED
    assert not any("67%" in e.message for e in result.events), "the setWeight 67 step must be skipped"
    stable = deployment(kube.api_client, kube.namespace, "healthy")
    assert stable is not None and image_of(stable) == "demo:2"


async def test_pause_holds_and_resume_continues(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [{"setWeight": 34}, {"pause": {"duration": "1s"}}, {"setWeight": 67}])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.step == 1)
        await handle.execute_update("pause", ControlRequest())
        # Paused during the 1 s pause step: it runs out, and the next step does not start.
        held = await wait_for(handle, lambda s: s.phase == Phase.PAUSED and s.step == 2)
        await asyncio.sleep(2.5)  # longer than the 1 s pause step: a paused rollout must not move on
        still = await wait_for(handle, lambda s: True)
        assert still.phase == Phase.PAUSED and still.weight == 34 and still.step == held.step == 2
        await handle.execute_update("resume", ControlRequest())
        result = await handle.result()

    assert result.phase == Phase.PROMOTED
    assert any("67%" in e.message for e in result.events)


async def test_manual_approval_waits_and_its_timeout_rolls_back(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [
        {"setWeight": 34}, {"pause": {"untilApproved": True, "timeout": "2s"}}, {"setWeight": 100}])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        waiting = await wait_for(handle, lambda s: s.phase == Phase.WAITING_APPROVAL)
        assert waiting.waiting_for is not None and "approval" in waiting.waiting_for
        result = await handle.result()

    assert result.phase == Phase.ROLLED_BACK
    assert "nobody approved" in (result.reason or "")
    assert_rolled_back(kube, "healthy")


async def test_manual_approval_lets_the_rollout_continue(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [
        {"setWeight": 34}, {"pause": {"untilApproved": True, "timeout": "5m"}}, {"setWeight": 100}])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.phase == Phase.WAITING_APPROVAL)
        await handle.execute_update("approve", ControlRequest(by="release-owner"))
        result = await handle.result()

    assert result.phase == Phase.PROMOTED
    assert any("approval received by release-owner" in e.message for e in result.events)


async def test_cancellation_rolls_back(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    from temporalio.client import WorkflowFailureError

    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [{"setWeight": 34}, {"pause": {"duration": "5m"}}])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.step == 1)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        final = await handle.query("status")

    assert final["phase"] == "aborted"
    assert_rolled_back(kube, "healthy")


async def test_gateway_api_rollout_shifts_route_weights_and_cleans_up(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    """Through a mesh router the canary is sized up front, traffic moves only by backendRef weights, and
    at the end the HTTPRoute points at stable alone and the canary Service is gone."""
    make_stable(kube, "healthy")
    k8s.CoreV1Api(kube.api_client).create_namespaced_service(kube.namespace, {
        "metadata": {"name": "healthy", "labels": {"app": "healthy"}},
        "spec": {"selector": {"app": "healthy"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    })
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "healthy"},
        "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["shop.local"],
                 "rules": [{"backendRefs": [{"name": "healthy", "port": 80}]}]},
    }
    custom = k8s.CustomObjectsApi(kube.api_client)
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", kube.namespace, "httproutes", route)
    spec = rollout(kube.namespace, "healthy", [{"setWeight": 20}, {"pause": {"duration": "5m"}}, {"setWeight": 60}],
                   traffic={"type": "gateway-api", "httpRoute": "healthy", "stableService": "healthy",
                            "canaryService": "healthy-canary"}, canaryReplicas=2)

    def weights() -> dict[str, int]:
        obj = custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", kube.namespace, "httproutes", "healthy")
        return {ref["name"]: ref.get("weight", 1) for ref in obj["spec"]["rules"][0]["backendRefs"]}

    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.step == 1 and s.weight == 20)
        assert weights() == {"healthy": 80, "healthy-canary": 20}
        canary = deployment(kube.api_client, kube.namespace, "healthy-canary")
        assert canary is not None and canary.spec.replicas == 2
        stable = deployment(kube.api_client, kube.namespace, "healthy")
        assert stable is not None and stable.spec.replicas == 3, "a mesh router never scales the stable"
        svc = k8s.CoreV1Api(kube.api_client).read_namespaced_service("healthy-canary", kube.namespace)
        assert svc.spec.selector.get("orchestrator.dev/role") == "canary"
        await handle.execute_update("promote", ControlRequest())
        result = await handle.result()

    assert result.phase == Phase.PROMOTED
    assert weights() == {"healthy": 100}
    services = [s.metadata.name for s in k8s.CoreV1Api(kube.api_client).list_namespaced_service(kube.namespace).items]
    assert services == ["healthy"]
    stable = deployment(kube.api_client, kube.namespace, "healthy")
    assert stable is not None and image_of(stable) == "demo:2"


async def test_a_long_rollout_continues_as_new_without_repeating_steps(
    kube: Any, prom_live: Any, temporal_client: Client, task_queue: str
) -> None:
    """A low history limit forces continue-as-new during a pause: the next run keeps the pause's deadline,
    the status and the canary, and no step is applied twice."""
    from orchestrator.api.canary import CanaryInput
    from workflows.canary import CanaryWorkflow, workflow_id

    make_stable(kube, "healthy")
    spec = rollout(kube.namespace, "healthy", [{"setWeight": 34}, {"pause": {"duration": "6s"}}, {"setWeight": 67}],
                   backgroundChecks=[error_check(name="bg-errors", count=None)])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await temporal_client.start_workflow(
            CanaryWorkflow.run, CanaryInput(rollout=spec, history_limit=40, watch_seconds=1),
            id=workflow_id(kube.namespace, "healthy"), task_queue=task_queue)
        result = await handle.result()

    assert result.phase == Phase.PROMOTED, result.reason
    continued = [e.message for e in result.events if e.message.startswith("continued as a new run")]
    assert continued, "the history limit must have forced at least one continue-as-new"
    weights = [e.message for e in result.events if e.message.startswith("shifting")]
    assert weights == ["shifting 34% of traffic to the canary", "shifting 67% of traffic to the canary"]
    assert sum(1 for e in result.events if e.message == "pause 0:00:06") == 1
    assert result.started_at is not None and result.finished_at is not None
    assert (result.finished_at - result.started_at).total_seconds() >= 6, "the pause kept its deadline"
    stable = deployment(kube.api_client, kube.namespace, "healthy")
    assert stable is not None and image_of(stable) == "demo:2"
