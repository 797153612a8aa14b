"""Rails right before every injection write, and no injection write after its revert (issue 17, defects 5 and 6).

Against the sandbox API server, whose audit log is the order of writes: a pod kill reads readiness and the
ready-pod floors again right before each delete; a run plans again after its steady-state looks and injects
that plan; a write carries the resourceVersion read with the run's mark, so it cannot land after the revert's
unmark; a cancelled drain stops evicting before the revert runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker

from orchestrator.api.chaos import ChaosInput, ChaosPhase
from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.models import ALLOW_ANNOTATION, EXPERIMENT_LABEL
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import plan_fault
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.client import chaos as control
from orchestrator.config import Settings
from orchestrator.errors import RefusedError
from orchestrator.gates.prometheus import PrometheusProvider
from tests.chaos.conftest import deploy, experiment, now, writes
from tests.chaos.test_radius import _seed_on
from tests.chaos.test_workflow import _until, _worker
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
async def worker(temporal_client: Client, task_queue: str, settings: Settings, kube: KubeTestEnv,
                 metrics: PrometheusProvider, policy: ChaosPolicy) -> Any:
    w: Worker = _worker(temporal_client, task_queue, settings, kube, metrics, policy)
    async with w:
        yield w


def _not_ready(kube: KubeTestEnv, name: str) -> None:
    kube.core.patch_namespaced_pod_status(name, kube.namespace, {"status": {"conditions": [
        {"type": "Ready", "status": "False"}]}})


def _pdb(kube: KubeTestEnv, name: str, min_available: int, labels: dict[str, str]) -> None:
    kube.policy.create_namespaced_pod_disruption_budget(kube.namespace, {
        "metadata": {"name": name}, "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels}}})


def test_pod_kill_reads_readiness_and_floors_again_before_each_delete(kube: KubeTestEnv, objects: Objects,
                                                                      policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4, max_unavailable=1)  # floor 3
    exp = experiment(kube.namespace, {"type": "pod-kill"})
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run="exp-run1", now=now())
    assert plan.skipped is None and len(plan.targets.chosen) == 1
    chosen = plan.targets.chosen[0].name
    other = next(p["metadata"]["name"] for p in kube.pods("app=web") if p["metadata"]["name"] != chosen)
    kube._audit_start = kube.server.audit_log.last_seq
    with kube.server.controller_paused():
        # Between the plan and the delete another pod stops being ready: one more kill would leave 2 of 4.
        _not_ready(kube, other)
        entry = ledger.record(objects, plan.entries[0])
        done = injector_for("pod-kill", objects).inject(entry)
        assert f"left {chosen} (Deployment {kube.namespace}/web would keep 2 ready pod(s), below its floor of 3)" \
            in done, done
        assert not [w for w in writes(kube) if w[0] == "delete"]
        # The chosen pod itself not ready: left too, with that reason.
        _not_ready(kube, chosen)
        assert f"left {chosen} (not ready)" in injector_for("pod-kill", objects).inject(entry)
        assert not [w for w in writes(kube) if w[0] == "delete"]
    injector_for("pod-kill", objects).revert(entry)


def test_an_injection_write_after_the_revert_is_refused(kube: KubeTestEnv, objects: Objects,
                                                        policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 1}, mode="all", max_percent=100)
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run="exp-run1", now=now())
    entry = ledger.record(objects, plan.entries[0])
    injector = injector_for("scale-down", objects)
    injector.revert(entry)  # the revert wins the race: the object is unmarked first
    kube._audit_start = kube.server.audit_log.last_seq
    with pytest.raises(RefusedError, match="not marked by run exp-run1"):
        injector.inject(entry)
    assert writes(kube) == []
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 4


def test_a_revert_between_the_read_and_the_write_wins(kube: KubeTestEnv, objects: Objects,
                                                      policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 1}, mode="all", max_percent=100)
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run="exp-run1", now=now())
    entry = ledger.record(objects, plan.entries[0])
    injector = injector_for("scale-down", objects)

    def change(obj: dict[str, Any]) -> dict[str, Any]:
        assert ledger.owner_of(obj) == "exp-run1"  # read with the mark...
        injector.revert(entry)  # ...then the revert lands before the write
        return {"spec": {"replicas": 1}}

    kube._audit_start = kube.server.audit_log.last_seq
    with pytest.raises(RefusedError, match="not marked by run exp-run1"):
        ledger.write_marked(objects, entry, change)
    assert [w for w in writes(kube) if w[0] == "patch"] == [("patch", "deployments", None, "web")]  # the revert
    dep = kube.apps.read_namespaced_deployment("web", kube.namespace)
    assert dep.spec.replicas == 4 and EXPERIMENT_LABEL not in (dep.metadata.labels or {})


def _history_types(events: list[Any], activity_of: dict[int, str]) -> list[tuple[str, str]]:
    """(event type, activity type) of every activity event, in order."""
    out = []
    for e in events:
        name = EventType.Name(e.event_type)
        if e.HasField("activity_task_scheduled_event_attributes"):
            attrs = e.activity_task_scheduled_event_attributes
            activity_of[e.event_id] = attrs.activity_type.name
            out.append((name, attrs.activity_type.name))
            continue
        for field in ("activity_task_cancel_requested_event_attributes", "activity_task_canceled_event_attributes",
                      "activity_task_completed_event_attributes", "activity_task_failed_event_attributes"):
            if e.HasField(field):
                out.append((name, activity_of.get(getattr(e, field).scheduled_event_id, "?")))
    return out


@pytest.mark.usefixtures("worker")
async def test_a_run_plans_again_after_its_steady_state_looks(kube: KubeTestEnv, temporal_client: Client,
                                                              task_queue: str) -> None:
    deploy(kube, replicas=4, max_unavailable=1)
    looks = [{"name": "up", "query": "vector(1)", "condition": {"min": 1}, "interval": "1s", "count": 5}]
    exp = experiment(kube.namespace, {"type": "pod-kill"}, checks=looks)
    kube._audit_start = kube.server.audit_log.last_seq
    handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)

    async def verifying() -> bool:
        return (await control.status(temporal_client, handle.id)).phase is ChaosPhase.VERIFYING

    while not await verifying():
        await asyncio.sleep(0.1)
    # Planned and passed; while the steady state is looked at, a budget appears that allows no disruption.
    _pdb(kube, "web", 4, {"app": "web"})
    result = await handle.result()
    assert result.phase is ChaosPhase.REFUSED, result.reason
    assert "below its floor of 4" in (result.reason or "")
    assert [w for w in writes(kube) if w[1] == "pods"] == []


@pytest.fixture
def guarded_node(kube: KubeTestEnv) -> Iterator[str]:
    """A node with web pods and a pod of no workload that a PodDisruptionBudget keeps: a drain there is slow."""
    deploy(kube, replicas=4, max_unavailable="50%")
    nodes = [p["spec"]["nodeName"] for p in kube.pods("app=web")]
    node = max(set(nodes), key=nodes.count)
    kube.core.create_namespaced_pod(kube.namespace, {
        "metadata": {"name": "guard", "labels": {"app": "guard"}, "annotations": {ALLOW_ANNOTATION: "true"}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "demo"}]}})
    _pdb(kube, "guard", 1, {"app": "guard"})
    kube.settle(3)
    kube.core.patch_node(node, {"metadata": {"annotations": {ALLOW_ANNOTATION: "true"}}})
    try:
        yield node
    finally:
        kube.core.patch_node(node, {"spec": {"unschedulable": None}, "metadata": {
            "annotations": {ALLOW_ANNOTATION: None}, "labels": {EXPERIMENT_LABEL: None}}})


@pytest.mark.usefixtures("worker")
async def test_a_cancelled_drain_stops_evicting_before_its_revert(kube: KubeTestEnv, temporal_client: Client,
                                                                  task_queue: str, objects: Objects,
                                                                  guarded_node: str) -> None:
    node = guarded_node
    exp = _seed_on(objects, experiment(kube.namespace, {"type": "node-drain", "evictionTimeout": "60s"},
                                       max_percent=100, duration="60s"), node)
    kube._audit_start = kube.server.audit_log.last_seq
    handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)

    def refused_once() -> bool:
        return any(e.get("subresource") == "eviction" and e.get("name") == "guard" and e.get("code") == 429
                   for e in kube.audit())

    await _until(refused_once)  # the drain is waiting on the guard's budget
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()

    read = kube.core.read_node(node)
    assert not read.spec.unschedulable and EXPERIMENT_LABEL not in (read.metadata.labels or {})
    entries = kube.server.audit(since=kube._audit_start)
    unmark = max(e["seq"] for e in entries if e.get("resource") == "nodes" and e.get("verb") == "patch")
    late = [e for e in entries if e["seq"] > unmark and e.get("subresource") == "eviction"]
    assert late == [], late
    # The history says the same: the injection had stopped (cancelled) before the revert was scheduled.
    history = [e async for e in handle.fetch_history_events()]
    order = _history_types(history, {})
    cancelled = order.index(("EVENT_TYPE_ACTIVITY_TASK_CANCELED", "chaos.inject"))
    revert = order.index(("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED", "chaos.revert"))
    assert cancelled < revert, order
