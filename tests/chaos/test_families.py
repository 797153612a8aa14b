"""The fault families added to the catalogue: disk I/O faults and network partitions through Chaos Mesh, and pod
kill of a StatefulSet replica by ordinal.

The sandbox stores Chaos Mesh resources without acting on them, so what is checked is the orchestrator's side:
each resource is created exactly as planned, recorded in the ledger (the workflow's and the marks on it), and
removed on every path out of the experiment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.api.chaos import ChaosInput, ChaosPhase
from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.models import ALLOW_ANNOTATION, EXPERIMENT_LABEL, LEDGER_ANNOTATION
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import plan_fault
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.client import chaos as control
from orchestrator.config import Settings
from orchestrator.errors import RefusedError
from orchestrator.gates.prometheus import PrometheusProvider
from tests.chaos.conftest import deploy, experiment, now, writes
from tests.chaos.test_workflow import _breaking_check, _worker
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(90)

IO_LATENCY = {"type": "io-chaos", "action": "latency", "volumePath": "/data", "path": "/data/**/*",
              "delay": "100ms", "percent": 50, "methods": ["READ", "WRITE"]}
IO_ERRORS = {"type": "io-chaos", "action": "fault", "volumePath": "/data", "errno": 5, "percent": 10}
PARTITION = {"type": "network-chaos", "action": "partition", "direction": "both",
             "partition": {"selector": {"app": "db"}, "mode": "one"}}
PLURAL = {"io-chaos": "iochaos", "network-chaos": "networkchaos"}


@pytest.fixture
async def worker(temporal_client: Client, task_queue: str, settings: Settings, kube: KubeTestEnv,
                 metrics: PrometheusProvider, policy: ChaosPolicy) -> AsyncIterator[Worker]:
    w = _worker(temporal_client, task_queue, settings, kube, metrics, policy)
    async with w:
        yield w


def _cr(kube: KubeTestEnv, fault: dict[str, Any], name: str) -> dict[str, Any] | None:
    try:
        return dict(kube.custom.get_namespaced_custom_object(
            "chaos-mesh.org", "v1alpha1", kube.namespace, PLURAL[fault["type"]], name))
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


# ---- planning: exactly what Chaos Mesh will be asked, both sides of a partition in the radius ------------------


@pytest.mark.usefixtures("chaos_mesh")
def test_io_chaos_resource_is_planned_on_the_exact_pods(kube: KubeTestEnv, objects: Objects,
                                                        policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    plan = plan_fault(objects=objects, policy=policy, experiment=experiment(kube.namespace, IO_LATENCY), run="r-1",
                      now=now())
    [entry] = plan.entries
    assert entry.creates and entry.object.kind == "IOChaos"
    spec = entry.action["spec"]
    assert spec["selector"] == {"pods": {kube.namespace: [plan.targets.chosen[0].name]}} and spec["mode"] == "all"
    assert (spec["action"], spec["delay"], spec["percent"], spec["volumePath"]) == ("latency", "100ms", 50, "/data")
    assert spec["methods"] == ["READ", "WRITE"] and spec["duration"] == "3s"
    assert "I/O latency 100ms on 50% of calls under /data/**/*" in plan.describe()


@pytest.mark.usefixtures("chaos_mesh")
def test_a_partition_counts_both_sides(kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    deploy(kube, "db", replicas=2)
    plan = plan_fault(objects=objects, policy=policy, experiment=experiment(kube.namespace, PARTITION), run="r-1",
                      now=now())
    spec = plan.entries[0].action["spec"]
    [db_pod] = spec["target"]["selector"]["pods"][kube.namespace]
    assert spec["action"] == "partition" and spec["direction"] == "both" and spec["target"]["mode"] == "all"
    assert {p.owner for p in plan.hits} == {"web", "db"} and db_pod in {p.name for p in plan.hits}
    assert "the other side of the partition: 1 pod(s)" in plan.describe()
    # The far side is held to the same percentages: all of db is more than half of it.
    everything = experiment(kube.namespace, {**PARTITION, "partition": {"selector": {"app": "db"}, "mode": "all"}})
    with pytest.raises(RefusedError, match=r"2 of the 2 ready pods of Deployment t-\w+/db \(100%\)"):
        plan_fault(objects=objects, policy=policy, experiment=everything, run="r-1", now=now())


@pytest.mark.usefixtures("chaos_mesh")
def test_a_partition_into_a_namespace_that_is_not_allowed_is_refused(kube: KubeTestEnv, objects: Objects,
                                                                     policy: ChaosPolicy) -> None:
    deploy(kube, replicas=4)
    other = f"o-{kube.namespace[2:]}"
    kube.core.create_namespace({"metadata": {"name": other}})
    try:
        from tests.fixtures_kube import deployment_manifest

        kube.apps.create_namespaced_deployment(other, deployment_manifest("db", replicas=2))
        kube.settle(3)
        far = {**PARTITION, "partition": {"namespace": other, "selector": {"app": "db"}, "mode": "one"}}
        kube._audit_start = kube.server.audit_log.last_seq
        with pytest.raises(RefusedError, match=f"{other}/db-\\S+ \\(namespace not allowed\\)"):
            plan_fault(objects=objects, policy=policy, experiment=experiment(kube.namespace, far), run="r-1",
                       now=now())
        assert writes(kube, all_namespaces=True) == []
    finally:
        kube.core.delete_namespace(other)


# ---- every path: created, in the ledger, removed -----------------------------------------------------------------


async def _until_cr(kube: KubeTestEnv, fault: dict[str, Any], name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        cr = await asyncio.to_thread(_cr, kube, fault, name)
        if cr is not None:
            return cr
        assert time.monotonic() < deadline, "the Chaos Mesh resource was never created"
        await asyncio.sleep(0.1)


@pytest.mark.usefixtures("worker", "chaos_mesh")
@pytest.mark.parametrize("path", ["success", "abort", "breach"])
@pytest.mark.parametrize("fault", [IO_LATENCY, IO_ERRORS, PARTITION], ids=["io-latency", "io-errors", "partition"])
async def test_chaos_mesh_fault_is_created_recorded_and_removed(
        kube: KubeTestEnv, temporal_client: Client, task_queue: str, fault: dict[str, Any], path: str) -> None:
    deploy(kube, replicas=4)
    deploy(kube, "db", replicas=2)
    checks = _breaking_check(3) if path == "breach" else None
    exp = experiment(kube.namespace, fault, duration="2s" if path == "success" else "60s", checks=checks,
                     recover_within="2s")
    handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)
    st = await control.status(temporal_client, handle.id)
    while not st.run:
        st = await control.status(temporal_client, handle.id)
    cr = await _until_cr(kube, fault, st.run)
    assert cr["metadata"]["labels"][EXPERIMENT_LABEL] == st.run
    recorded = ledger.read_entry(cr)
    assert recorded is not None and recorded.creates and LEDGER_ANNOTATION in cr["metadata"]["annotations"]
    st = await control.status(temporal_client, handle.id)
    assert [e.object.name for e in st.ledger] == [st.run]  # the workflow's own copy of the ledger
    if path == "abort":
        await control.abort(temporal_client, handle.id, reason="test", by="pytest")
    result = await handle.result()
    expected = {"success": ChaosPhase.COMPLETED, "abort": ChaosPhase.ABORTED, "breach": ChaosPhase.BREACHED}[path]
    assert result.phase is expected, result.reason
    assert await asyncio.to_thread(_cr, kube, fault, st.run) is None
    assert [(w[0], w[1]) for w in writes(kube) if w[1] == PLURAL[fault["type"]]] == [
        ("create", PLURAL[fault["type"]]), ("delete", PLURAL[fault["type"]])]


# ---- StatefulSet targets: the StatefulSet's own ordering --------------------------------------------------------


def _statefulset(kube: KubeTestEnv, name: str = "db", replicas: int = 3) -> None:
    """A StatefulSet and its pods ``<name>-0..n``, owned by it as the StatefulSet controller would create them."""
    labels = {"app": name}
    sts = kube.apps.create_namespaced_stateful_set(kube.namespace, {
        "metadata": {"name": name, "annotations": {ALLOW_ANNOTATION: "true"}},
        "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "db", "image": "db:1"}]}}}})
    for ordinal in range(replicas):
        kube.core.create_namespaced_pod(kube.namespace, {
            "metadata": {"name": f"{name}-{ordinal}", "labels": {**labels,
                                                                 "apps.kubernetes.io/pod-index": str(ordinal)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name,
                                              "uid": sts.metadata.uid, "controller": True}]},
            "spec": {"containers": [{"name": "db", "image": "db:1"}]}})
    kube.settle(2)


def test_statefulset_kill_respects_its_ordering(kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy) -> None:
    _statefulset(kube)
    kill = {"type": "pod-kill", "ordinal": "highest"}
    exp = experiment(kube.namespace, kill, app="db")
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run="sts-1", now=now())
    assert [p.name for p in plan.targets.chosen] == ["db-2"]
    [entry] = plan.entries
    assert (entry.object.kind, entry.object.name) == ("StatefulSet", "db")
    [floor] = plan.floors
    assert (floor.kind, floor.replicas, floor.floor, floor.hit) == ("StatefulSet", 3, 2, 1)
    for ordinal, pod in (("lowest", "db-0"), (1, "db-1")):
        named = experiment(kube.namespace, {"type": "pod-kill", "ordinal": ordinal}, app="db")
        assert [p.name for p in plan_fault(objects=objects, policy=policy, experiment=named, run="sts-1",
                                           now=now()).targets.chosen] == [pod]
    with pytest.raises(RefusedError, match="has no pod db-7"):
        plan_fault(objects=objects, policy=policy, run="sts-1", now=now(),
                   experiment=experiment(kube.namespace, {"type": "pod-kill", "ordinal": 7}, app="db"))
    kube._audit_start = kube.server.audit_log.last_seq
    injector = injector_for("pod-kill", objects)
    injector.inject(ledger.record(objects, entry))
    assert "db-2" not in {p["metadata"]["name"] for p in kube.pods("app=db")}
    sts = kube.apps.read_namespaced_stateful_set("db", kube.namespace)
    assert sts.metadata.labels[EXPERIMENT_LABEL] == "sts-1"
    injector.revert(entry)
    assert writes(kube) == [("patch", "statefulsets", None, "db"), ("delete", "pods", None, "db-2"),
                            ("patch", "statefulsets", None, "db")]
    # db-2 is gone and not yet back: 2 of 3 ready is the StatefulSet's floor, so the next kill is skipped.
    again = plan_fault(objects=objects, policy=policy, experiment=experiment(kube.namespace, {"type": "pod-kill"},
                                                                            app="db"), run="sts-2", now=now())
    assert again.skipped is not None and "StatefulSet" in again.skipped and "floor of 2" in again.skipped
