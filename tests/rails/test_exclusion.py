"""Mutual exclusion through the real Temporal's visibility: a canary and a chaos experiment on the same target
refuse each other, each naming the other workflow's id. The other workflow is started under its real type,
id convention and memo (``workflows.chaos.memo_for``) on a task queue no worker polls, so it stays running."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle

from orchestrator.chaos.models import ALLOW_ANNOTATION
from orchestrator.rails.models import RailsRequest, RailStatus
from orchestrator.specs.chaos import ChaosExperiment
from orchestrator.specs.flags import FlagRamp
from tests.fixtures_kube import KubeTestEnv, deployment_manifest
from tests.rails.conftest import canary_spec, policy

pytestmark = pytest.mark.timeout(120)


def experiment(namespace: str, app: str = "web") -> ChaosExperiment:
    return ChaosExperiment.model_validate({
        "kind": "ChaosExperiment", "metadata": {"name": "kill-web"},
        "spec": {"target": {"namespace": namespace, "selector": {"app": app}, "mode": "one", "seed": 1},
                 "fault": {"type": "pod-kill"}, "duration": "5s",
                 "steadyState": {"checks": [{"name": "up", "query": "vector(1)", "condition": {"min": 1},
                                             "interval": "1s", "count": 1}]},
                 "blastRadius": {"maxPodsPercent": 50}},
    })


async def visible(client: Client, workflow_id: str) -> None:
    # Visibility is eventually consistent: wait until the list query sees the workflow.
    for _ in range(100):
        async for wf in client.list_workflows(f"WorkflowId='{workflow_id}' AND ExecutionStatus='Running'"):
            if wf.id == workflow_id:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} never became visible")


@pytest.fixture
async def started(temporal_client: Client) -> AsyncIterator[list[WorkflowHandle[Any, Any]]]:
    handles: list[WorkflowHandle[Any, Any]] = []
    yield handles
    for h in handles:
        try:
            await h.terminate("test over")
        except Exception:
            pass


@pytest.fixture
def web(kube: KubeTestEnv) -> str:
    body = deployment_manifest("web", replicas=4)
    body["metadata"]["annotations"] = {ALLOW_ANNOTATION: "true"}
    kube.apps.create_namespaced_deployment(kube.namespace, body)
    kube.settle(4)
    return kube.namespace


async def test_a_canary_refuses_while_an_experiment_is_active_on_its_target(
    web: str, make_rails: Any, temporal_client: Client, started: list[WorkflowHandle[Any, Any]]
) -> None:
    rails = make_rails()
    before = await rails.check(RailsRequest(kind="canary", spec=canary_spec(web, "web")))
    assert next(v for v in before.verdicts if v.rail == "mutual-exclusion").status is RailStatus.OK
    exp_id = f"chaos-{web}-kill-web-{uuid.uuid4().hex[:4]}"
    started.append(await temporal_client.start_workflow(
        "ChaosExperiment", {"experiment": experiment(web).model_dump(by_alias=True, mode="json")}, id=exp_id,
        task_queue=f"nobody-{uuid.uuid4().hex[:6]}", memo={"namespace": web, "selector": {"app": "web"},
                                                           "experiment": "kill-web"}))
    await visible(temporal_client, exp_id)
    report = await rails.check(RailsRequest(kind="canary", spec=canary_spec(web, "web")))
    assert report.refused
    assert report.reason == (f"mutual-exclusion: a chaos experiment is active on {web}/web "
                             f"(workflow {exp_id}, selector app=web)")
    # An experiment on another app of the namespace is no conflict.
    other = await rails.check(RailsRequest(kind="flag", spec=FlagRamp.model_validate({
        "kind": "FlagRamp", "metadata": {"name": "f"},
        "spec": {"provider": {"type": "flagd", "name": "x"}, "flag": "f", "stages": [{"percent": 100}],
                 "target": {"namespace": web, "app": "cart"}}})))
    assert next(v for v in other.verdicts if v.rail == "mutual-exclusion").status is RailStatus.OK


async def test_an_experiment_refuses_while_a_canary_runs_on_its_target(
    web: str, make_rails: Any, temporal_client: Client, started: list[WorkflowHandle[Any, Any]]
) -> None:
    rails = make_rails(policy(namespaces={"allowed": [web]}, recentDeployments={"quietPeriod": "0s"}))
    exp = experiment(web)
    ok = await rails.check(RailsRequest(kind="chaos", spec=exp, workflow_id=f"chaos-{web}-kill-web"))
    assert not ok.refused, ok.lines()
    canary_id = f"canary-{web}-web"
    started.append(await temporal_client.start_workflow(
        "CanaryRollout", {"rollout": canary_spec(web, "web").model_dump(by_alias=True, mode="json")},
        id=canary_id, task_queue=f"nobody-{uuid.uuid4().hex[:6]}"))
    report = await rails.check(RailsRequest(kind="chaos", spec=exp, workflow_id=f"chaos-{web}-kill-web"))
    assert report.refused
    assert report.reason == f"mutual-exclusion: a canary rollout is active on {web}/web (workflow {canary_id})"
