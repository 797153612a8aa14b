"""Fleet releases end to end: real Temporal, three sandbox clusters, each with its own Prometheus.

Given a stable Deployment of 4 pods in every cluster (``tests/release/fleet.py``), when a Release
runs its canary across them in waves, then each cluster ends as the release's verdict says — and a
promoted cluster that is undone comes back to its previous template with its ready pods never
below the floor while it rolls.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from orchestrator.api.common import ControlRequest
from orchestrator.api.release import ClusterPhase, ReleaseInput, ReleasePhase, ReleaseState, workflow_id
from orchestrator.specs.release import Release
from tests.release.fleet import NAMESPACE, Cluster, Sampler, Workers, fleet, make_stable, running
from workflows.release import ReleaseWorkflow

pytestmark = pytest.mark.timeout(120)

CLUSTERS = ["east", "west", "north"]
RATIO = ('sum(rate(http_requests_total{{namespace="{{{{namespace}}}}",app="{{{{app}}}}"{sel},code=~"5.."}}[6s])) / '
         'sum(rate(http_requests_total{{namespace="{{{{namespace}}}}",app="{{{{app}}}}"{sel}}}[6s]))')


@pytest.fixture(scope="module")
def clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Cluster]]:
    with fleet(CLUSTERS, tmp_path_factory.mktemp("fleet")) as started:
        yield started


def canary(app: str) -> dict[str, Any]:
    return {
        "apiVersion": "orchestrator.dev/v1", "kind": "CanaryRollout", "metadata": {"name": app},
        "spec": {
            "target": {"namespace": NAMESPACE, "deployment": app},
            "change": {"image": "demo:2"},
            "steps": [
                {"setWeight": 50},
                {"analysis": {"checks": [{
                    "name": "error-rate", "query": RATIO.format(sel=",{{track_selector}}"),
                    "condition": {"max": 0.05}, "interval": "1s", "count": 2, "initialDelay": "5s",
                    "waitForData": "20s"}]}},
            ],
            "progressDeadline": "30s",
        },
    }


def release(app: str, waves: list[dict[str, Any]], **spec: Any) -> Release:
    return Release.model_validate({
        "apiVersion": "orchestrator.dev/v1", "kind": "Release", "metadata": {"name": app},
        "spec": {"canary": canary(app), "waves": waves, **spec}})


def bake(seconds: int) -> dict[str, Any]:
    return {"duration": f"{seconds}s", "checks": [{
        "name": "bake-errors", "query": RATIO.format(sel=""), "condition": {"max": 0.05}, "interval": "1s",
        "noData": "inconclusive", "inconclusiveLimit": 5}]}


def fresh_app() -> str:
    return f"app-{secrets.token_hex(3)}"


async def start(temporal: Client, model: Release, workers: Workers, history_limit: int | None = None
                ) -> WorkflowHandle[Any, ReleaseState]:
    return await temporal.start_workflow(ReleaseWorkflow.run, ReleaseInput(release=model, history_limit=history_limit),
                                         id=workflow_id(model.metadata.name), task_queue=workers.central)


async def until(temporal: Client, handle: WorkflowHandle[Any, ReleaseState], predicate: Any, timeout: float = 60
                ) -> ReleaseState:
    # The latest run's status (no run id): a release may have handed over to a new run between waves.
    latest = temporal.get_workflow_handle_for(ReleaseWorkflow.run, handle.id)

    async def poll() -> ReleaseState:
        while True:
            state: ReleaseState = await latest.query(ReleaseWorkflow.status)
            if predicate(state):
                return state
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), timeout)


def messages(state: ReleaseState) -> list[str]:
    return [e.message for e in state.events]


def absent(cluster: Cluster, name: str) -> bool:
    try:
        cluster.apps.read_namespaced_deployment(name, NAMESPACE)
    except ApiException as exc:
        return bool(exc.status == 404)
    return False


async def test_a_healthy_release_promotes_wave_by_wave_with_a_bake_and_an_approval_between(
    clusters: dict[str, Cluster], temporal_client: Client
) -> None:
    app = fresh_app()
    make_stable(clusters, app)
    model = release(app, [{"clusters": ["east"], "bake": bake(3)},
                          {"clusters": ["west", "north"], "approval": {"timeout": "2m"}}])
    async with running(temporal_client, clusters) as workers:
        # A short history limit: the release hands over to a new run between the waves, and only there.
        handle = await start(temporal_client, model, workers, history_limit=40)
        waiting = await until(temporal_client, handle, lambda s: s.phase is ReleasePhase.WAITING_APPROVAL)
        # Nothing of the second wave runs before it is approved; the first baked already.
        assert [c.phase for c in waiting.clusters] == [ClusterPhase.BAKED, ClusterPhase.PENDING, ClusterPhase.PENDING]
        assert clusters["west"].image(app) == "demo:1"
        latest = temporal_client.get_workflow_handle_for(ReleaseWorkflow.run, handle.id)
        await latest.execute_update(ReleaseWorkflow.approve, ControlRequest(by="test"))
        result = await handle.result()

    assert result.phase is ReleasePhase.COMPLETED, messages(result)
    assert result.runs == 2, "one hand-over, between the waves"
    assert all(c.phase is ClusterPhase.BAKED for c in result.clusters)
    log = messages(result)
    promoted = [m.split()[0] for m in log if m.endswith("all steps passed") and " promoted" in m]
    assert promoted[0] == "east" and sorted(promoted[1:]) == ["north", "west"], log
    assert log.index(next(m for m in log if m.startswith("east baked"))) < log.index("wave 2 approved: west, north")
    assert any(m.startswith("east baked: baked for 0:00:03 (bake-errors passed)") for m in log), log
    for cluster in clusters.values():
        assert cluster.image(app) == "demo:2" and absent(cluster, f"{app}-canary")
    assert {c.workflow_id for c in result.clusters} == {f"canary-{n}-{NAMESPACE}-{app}" for n in CLUSTERS}
    history = await handle.fetch_history()
    await Replayer(workflows=[ReleaseWorkflow], data_converter=pydantic_data_converter).replay_workflow(history)


async def test_a_regression_in_the_second_wave_stops_the_release_and_restores_the_first_without_losing_capacity(
    clusters: dict[str, Cluster], temporal_client: Client
) -> None:
    app = fresh_app()
    make_stable(clusters, app)
    # West's canary fails a fifth of its requests there alone; north runs beside it in the same wave.
    model = release(app, [{"clusters": ["east"]}, {"clusters": ["west", "north"]}],
                    overrides={"west": {"env": {"ERROR_RATIO": "0.2"}}}, onFailure={"undo": "release"})
    async with running(temporal_client, clusters) as workers:
        handle = await start(temporal_client, model, workers)
        await until(temporal_client, handle, lambda s: s.cluster("east").phase is ClusterPhase.BAKED)
        assert clusters["east"].image(app) == "demo:2"
        with Sampler(clusters["east"], app) as sampler:
            result = await handle.result()

    assert result.phase is ReleasePhase.STOPPED, messages(result)
    assert result.stop is not None and (result.stop.cluster, result.stop.check) == ("west", "error-rate")
    assert result.stop.reason.startswith("west: canary rolled-back") and "error-rate" in result.stop.reason
    phases = {c.name: c.phase for c in result.clusters}
    assert phases["west"] is ClusterPhase.FAILED and phases["east"] is ClusterPhase.UNDONE
    assert phases["north"] in (ClusterPhase.CANCELLED, ClusterPhase.UNDONE), phases
    for cluster in clusters.values():
        assert cluster.image(app) == "demo:1", f"{cluster.name} is not back on the previous template"
        assert absent(cluster, f"{app}-canary")
    assert len(sampler.samples) > 20 and sampler.low >= 4, f"ready pods fell to {sampler.low} during the undo"
    dep = clusters["east"].apps.read_namespaced_deployment(app, NAMESPACE)
    assert dep.spec.strategy.rolling_update.max_unavailable == "25%", "the Deployment's own strategy is back"
    assert "orchestrator.dev/undo-strategy" not in (dep.metadata.annotations or {})


async def test_abort_during_a_bake_stops_the_release_and_undoes_the_wave(
    clusters: dict[str, Cluster], temporal_client: Client
) -> None:
    app = fresh_app()
    make_stable(clusters, app)
    model = release(app, [{"clusters": ["east"], "bake": bake(60)}, {"clusters": ["west", "north"]}],
                    onFailure={"undo": "wave"})
    async with running(temporal_client, clusters) as workers:
        handle = await start(temporal_client, model, workers)
        await until(temporal_client, handle, lambda s: s.phase is ReleasePhase.BAKING)
        await handle.execute_update(ReleaseWorkflow.abort, ControlRequest(by="test"))
        result = await handle.result()

    assert result.phase is ReleasePhase.ABORTED
    assert [c.phase for c in result.clusters] == [ClusterPhase.UNDONE, ClusterPhase.PENDING, ClusterPhase.PENDING]
    assert [cluster.image(app) for cluster in clusters.values()] == ["demo:1"] * 3


async def test_a_cluster_without_a_worker_is_reported_then_stops_the_release(
    clusters: dict[str, Cluster], temporal_client: Client
) -> None:
    app = fresh_app()
    make_stable(clusters, app)
    model = release(app, [{"clusters": ["north"]}], noWorkerTimeout="2s")
    async with running(temporal_client, clusters, absent=("north",)) as workers:
        handle = await start(temporal_client, model, workers)
        missing = await until(temporal_client, handle, lambda s: s.cluster("north").phase is ClusterPhase.NO_WORKER)
        assert any(m.startswith(f"no worker in north (task queue {workers.queues['north']})")
                   for m in messages(missing))
        result = await handle.result()

    assert result.phase is ReleasePhase.STOPPED
    assert result.stop is not None and result.stop.kind == "no-worker" and result.stop.cluster == "north"
    assert clusters["north"].image(app) == "demo:1" and absent(clusters["north"], f"{app}-canary")


async def test_a_cluster_the_operator_did_not_name_is_refused_before_anything_runs(
    clusters: dict[str, Cluster], temporal_client: Client
) -> None:
    model = release("nowhere", [{"clusters": ["east"]}, {"clusters": ["mars"]}])
    async with running(temporal_client, clusters) as workers:
        result = await (await start(temporal_client, model, workers)).result()
    assert result.phase is ReleasePhase.REFUSED
    assert result.stop is not None and "mars" in result.stop.reason and "east" in result.stop.reason
    assert all(c.phase is ClusterPhase.PENDING for c in result.clusters)

