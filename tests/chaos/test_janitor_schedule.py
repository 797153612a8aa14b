"""The janitor runs as a Temporal Schedule, looks only where its rights reach, and says what it cannot see.

Real Temporal dev server; the sandbox API server with a namespace-scoped token for the chart's default rights
(a Role in the allowed namespace: anything cluster-wide answers 403, as on a cluster).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from kubernetes import client, config
from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator import telemetry
from orchestrator.activities.chaos import ChaosActivities
from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.janitor import run_janitor, sweep_scoped
from orchestrator.chaos.objects import Objects
from orchestrator.chaos.planning import plan_fault
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.client import janitor as janitor_schedule
from orchestrator.config import Settings
from orchestrator.gates.prometheus import PrometheusProvider
from tests.chaos.conftest import PromRules, deploy, experiment, now
from tests.chaos.test_cli import _env, orchestrator
from tests.fixtures_kube import KubeTestEnv
from workflows.janitor import JanitorWorkflow

pytestmark = pytest.mark.timeout(90)


def _expired_fault(objects: Objects, policy: ChaosPolicy, namespace: str, run: str) -> None:
    """A scale-down injected by a run planned two hours ago: its expiry has passed, and no workflow exists."""
    exp = experiment(namespace, {"type": "scale-down", "replicas": 1}, mode="all", max_percent=100)
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run=run, now=now() - timedelta(hours=2))
    for entry in plan.entries:
        injector_for(entry.fault, objects).inject(ledger.record(objects, entry))


@pytest.fixture
def namespaced(kube: KubeTestEnv, tmp_path: Path) -> Iterator[tuple[Objects, Path]]:
    """Objects over the chart's default rights: a Role in the test namespace only."""
    path = kube.server.write_kubeconfig(tmp_path / "namespaced", token=f"namespace:{kube.namespace}")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    api = client.ApiClient(configuration)
    try:
        yield Objects(api), path
    finally:
        api.close()


def test_namespaced_rights_sweep_what_they_reach_and_say_what_they_cannot_see(
        kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy, namespaced: tuple[Objects, Path],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    deploy(kube, replicas=4)
    _expired_fault(objects, policy, kube.namespace, "expired-1")
    restricted, kubeconfig = namespaced
    monkeypatch.setenv("ORCHESTRATOR_CHAOS_NAMESPACES", kube.namespace)
    # Node drain enabled but nodes not granted: the janitor says so, plainly, and still does its job.
    with caplog.at_level(logging.INFO):
        lines = run_janitor(Settings(kubeconfig=str(kubeconfig)))
    assert kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas == 4
    assert len(lines) == 1 and "expired-1" in lines[0] and "restored" in lines[0]
    assert not any("problem" in line or "nodes" in line for line in lines)  # nothing else passes for "reverted"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["janitor: cannot see nodes: listing them is forbidden (HTTP 403), so a fault left on "
                        "them is not reverted here"]
    # With node drain off (the chart's default), nodes are not even asked for.
    monkeypatch.setenv("ORCHESTRATOR_CHAOS_NODE_DRAIN", "false")
    kube._audit_start = kube.server.audit_log.last_seq
    report = sweep_scoped(restricted)
    assert report.blind == [] and report.problems == []
    assert not [e for e in kube.audit(all_namespaces=True) if e.get("resource") == "nodes"]
    assert all(e.get("code") != 403 for e in kube.audit(all_namespaces=True))


async def test_scheduled_janitor_reverts_an_expired_fault_and_shows_its_runs(
        kube: KubeTestEnv, objects: Objects, policy: ChaosPolicy, temporal_client: Client, task_queue: str,
        settings: Settings, metrics: PrometheusProvider, prom_rules: PromRules,
        monkeypatch: pytest.MonkeyPatch) -> None:
    deploy(kube, replicas=4)
    monkeypatch.setenv("ORCHESTRATOR_CHAOS_NAMESPACES", kube.namespace)
    acts = ChaosActivities(settings, api_client=kube.api_client, metrics=metrics, temporal=temporal_client,
                           policy=policy)
    ok_before = telemetry.default_metrics().janitor_runs.value(outcome="ok")
    worker = Worker(temporal_client, task_queue=task_queue, workflows=[JanitorWorkflow],
                    activities=acts.activities(), activity_executor=concurrent.futures.ThreadPoolExecutor(4))
    async with worker:
        try:
            # A worker started earlier in this session may have made the schedule already: start from none.
            await janitor_schedule.ensure(temporal_client, task_queue, None)
            created = await janitor_schedule.ensure(temporal_client, task_queue, timedelta(seconds=1))
            assert created.startswith("created")
            # A second worker starting updates the one schedule rather than adding another.
            updated = await janitor_schedule.ensure(temporal_client, task_queue, timedelta(seconds=2))
            assert updated.startswith("updated")
            await asyncio.to_thread(_expired_fault, objects, policy, kube.namespace, "expired-2")
            deadline = time.monotonic() + 20
            while kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas != 4:
                assert time.monotonic() < deadline, "the scheduled janitor did not revert the expired fault"
                await asyncio.sleep(0.2)
            info = None
            for _ in range(50):
                info = await janitor_schedule.describe(temporal_client)
                assert info is not None
                if any(r.result and any("expired-2" in line for line in r.result.reverted) for r in info.runs):
                    break
                await asyncio.sleep(0.2)
            assert info is not None and info.every == "every 0:00:02"
            assert telemetry.default_metrics().janitor_runs.value(outcome="ok") > ok_before
            listing = await asyncio.to_thread(orchestrator, "chaos", "list", env=_env(kube, settings, prom_rules))
            assert listing.returncode == 0, listing.stderr
            assert f"janitor: schedule {janitor_schedule.SCHEDULE_ID} every 0:00:02" in listing.stdout
            assert "reverted 1" in listing.stdout or "reverted 0" in listing.stdout
        finally:
            assert "off" in await janitor_schedule.ensure(temporal_client, task_queue, None)
    assert await janitor_schedule.describe(temporal_client) is None


@pytest.mark.parametrize("enabled", [False, True])
def test_the_chart_tells_the_janitor_whether_node_drain_is_granted(enabled: bool) -> None:
    from helm_python.chart import Chart

    from orchestrator.chaos.janitor import node_drain_enabled
    from tests.helm.test_chart import CHART, render

    objects = render(Chart.load(str(CHART)), {"chaos": {"nodeDrain": {"enabled": enabled}}})
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert node_drain_enabled(env) is enabled
    assert any(r["resources"] == ["nodes"] or "nodes" in r["resources"]
               for o in objects if o["kind"] == "ClusterRole" for r in o["rules"]) is enabled
