"""Faults end on every path, also the abrupt ones: a terminated GameDay, ``abort --all`` with workflows gone,
repeated kills held to the workloads' ready-pod floors. Real Temporal, real Prometheus, the sandbox API server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.api.chaos import ChaosInput, ChaosPhase, GameDayInput
from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.models import ALLOW_ANNOTATION, EXPERIMENT_LABEL
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import plan_fault
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.client import chaos as control
from orchestrator.config import Settings
from orchestrator.gates.prometheus import PrometheusProvider
from tests.chaos.conftest import deploy, experiment, now, writes
from tests.chaos.test_workflow import _replicas, _unmarked, _until, _worker
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(90)

SCALE = {"type": "scale-down", "replicas": 1}


@pytest.fixture
async def worker(temporal_client: Client, task_queue: str, settings: Settings, kube: KubeTestEnv,
                 metrics: PrometheusProvider, policy: ChaosPolicy) -> AsyncIterator[Worker]:
    w = _worker(temporal_client, task_queue, settings, kube, metrics, policy)
    async with w:
        yield w


# ---- 5. a terminated GameDay cancels its running child, which reverts ----------------------------------------


@pytest.mark.usefixtures("worker")
async def test_terminating_a_gameday_mid_fault_reverts_the_fault(kube: KubeTestEnv, temporal_client: Client,
                                                                 task_queue: str) -> None:
    deploy(kube, replicas=4)
    long = experiment(kube.namespace, SCALE, name="long", mode="all", max_percent=100, duration="60s")
    inp = GameDayInput(name="gd", experiments=[ChaosInput(experiment=long)])
    handle = await temporal_client.start_workflow("GameDay", inp, id=f"gameday-{kube.namespace}",
                                                  task_queue=task_queue)
    await _until(lambda: _replicas(kube) == 1)
    await handle.terminate(reason="test: the GameDay is killed mid-fault")
    # Terminate skips the parent's own cleanup; the child is asked to cancel and reverts in its finally.
    await _until(lambda: _replicas(kube) == 4 and _unmarked(kube), timeout=60)
    child = temporal_client.get_workflow_handle(f"gameday-{kube.namespace}-1-long")
    for _ in range(100):
        desc = await child.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            break
        await asyncio.sleep(0.2)
    assert desc.status is not None and desc.status.name == "CANCELED"  # cancelled, not terminated


# ---- 2. repeated pod kill: never below the workload's ready-pod floor ------------------------------------------


def _label_nodes(kube: KubeTestEnv, key: str, value: str | None) -> None:
    for node in kube.server.list("", "v1", "nodes"):
        kube.core.patch_node(node["metadata"]["name"], {"metadata": {"labels": {key: value}}})


@pytest.mark.usefixtures("worker")
async def test_repeated_kill_stops_at_the_floor_while_replacements_are_pending(
        kube: KubeTestEnv, temporal_client: Client, task_queue: str) -> None:
    # Pods may only run on nodes labelled for this test; once the label is gone, replacements stay Pending,
    # as on a cluster that has run out of room.
    pool = f"pool-{kube.namespace}"
    _label_nodes(kube, pool, "yes")
    try:
        from tests.fixtures_kube import deployment_manifest

        body = deployment_manifest("web", replicas=4)
        body["metadata"]["annotations"] = {ALLOW_ANNOTATION: "true"}
        body["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "50%"}}
        body["spec"]["template"]["spec"]["nodeSelector"] = {pool: "yes"}
        kube.apps.create_namespaced_deployment(kube.namespace, body)
        await _until(lambda: sum(1 for p in kube.pods("app=web") if _ready(p)) == 4)
        _label_nodes(kube, pool, None)
        kube._audit_start = kube.server.audit_log.last_seq
        exp = experiment(kube.namespace, {"type": "pod-kill", "interval": "1s"}, duration="7s", max_percent=50,
                         seed=None)
        lowest = 4
        task = asyncio.ensure_future(
            (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result())
        while not task.done():
            lowest = min(lowest, sum(1 for p in kube.pods("app=web") if _ready(p)))
            await asyncio.sleep(0.1)
        result = task.result()
        assert result.phase is ChaosPhase.COMPLETED, result.reason
        deletes = [w for w in writes(kube) if w[0] == "delete" and w[1] == "pods"]
        # maxUnavailable 50% of 4: two pods may be down at once, never a third, however many rounds ran.
        assert len(deletes) == 2, deletes
        assert lowest == 2
        # The rounds that would have crossed the floor are in the run's record, each with its reason.
        assert result.skipped_rounds
        assert all("keep 1 ready pod(s), below its floor of 2" in r for r in result.skipped_rounds), \
            result.skipped_rounds
    finally:
        _label_nodes(kube, pool, None)


def _ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


# ---- 6. abort --all: every fault of every experiment, workflows gone or not ------------------------------------


async def test_abort_all_reverts_faults_whose_workflow_is_gone_and_reports(
        kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy, temporal_client: Client,
        monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(kube, "web", replicas=4)
    deploy(kube, "api", replicas=3)
    # Two faults injected by runs that have no workflow at all (their worker and history are gone), one far from
    # its expiry: only the marks on the objects remember them.
    for app, run in (("web", "gone-1"), ("api", "gone-2")):
        exp = experiment(kube.namespace, SCALE, app=app, mode="all", max_percent=100, duration="1h")
        plan = plan_fault(objects=objects, policy=policy, experiment=exp, run=run, now=now())
        for entry in plan.entries:
            injector_for(entry.fault, objects).inject(ledger.record(objects, entry))
    # And one whose ledger annotation was damaged: it cannot be reverted, and the report must say so.
    kube.apps.patch_namespaced_deployment("api", kube.namespace, {"metadata": {"annotations": {
        "chaos.orchestrator.dev/ledger": "{not json"}}})
    monkeypatch.setenv("ORCHESTRATOR_CHAOS_NAMESPACES", kube.namespace)
    report = await control.abort_all(temporal_client, objects, "test", "pytest")
    web = kube.apps.read_namespaced_deployment("web", kube.namespace)
    assert web.spec.replicas == 4 and EXPERIMENT_LABEL not in (web.metadata.labels or {})
    assert any("gone-1" in line and f"Deployment {kube.namespace}/web" in line for line in report.reverted)
    assert any(f"Deployment {kube.namespace}/api" in line and "gone-2" in line and "unreadable" in line
               for line in report.problems)
    assert not report.clean
    # Nothing left: a second press reverts nothing more and reports the same unrevertable fault.
    again = await control.abort_all(temporal_client, objects, "test", "pytest")
    assert [line for line in again.reverted if kube.namespace in line] == []
