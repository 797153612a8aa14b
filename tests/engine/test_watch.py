"""The ``watch`` activity on the real Temporal server, with the in-process metric stand-in.

A watch resumes from its last heartbeat after its worker died (no counter starts again from zero);
the engine runs a long analysis as one watch, and abort and promote act at once during it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from orchestrator.activities.watch import WatchActivities
from orchestrator.api.canary import Phase
from orchestrator.api.common import ControlRequest
from orchestrator.cli.canary import with_live_looks
from orchestrator.config import Settings
from orchestrator.gates.watch_fold import End, WatchRequest, WatchResult, WatchSpec, watch_queue
from orchestrator.specs.checks import Check
from tests.engine.stand_ins import World, WorldLooker, engine_worker
from tests.engine.test_engine import canary, check, start_canary, until
from workflows.canary import CanaryWorkflow

pytestmark = pytest.mark.timeout(60)


@workflow.defn(name="WatchProbe", sandboxed=False)
class WatchProbe:
    """Runs one watch (with a short heartbeat timeout, so a dead worker is noticed in seconds)."""

    @workflow.run
    async def run(self, req: WatchRequest) -> WatchResult:
        result: WatchResult = await workflow.execute_activity(
            "watch.checks", req, result_type=WatchResult, task_queue=watch_queue(workflow.info().task_queue),
            start_to_close_timeout=timedelta(minutes=2), heartbeat_timeout=timedelta(seconds=2),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_interval=timedelta(
                milliseconds=200)))
        return result


def watcher(client: Client, queue: str, world: World) -> Worker:
    return Worker(client, task_queue=watch_queue(queue), max_heartbeat_throttle_interval=timedelta(seconds=0.3),
                  activities=WatchActivities(Settings(), looker=WorldLooker(world)).activities(),
                  graceful_shutdown_timeout=timedelta(0))


async def test_a_watch_whose_worker_died_resumes_from_its_last_heartbeat(temporal_client: Client) -> None:
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    world = World()
    count = 12
    spec = WatchSpec(checks=[Check.model_validate({**check(count=count), "interval": "0.4s"})],
                     started=datetime.now(UTC), until=datetime.now(UTC) + timedelta(minutes=1))
    async with Worker(temporal_client, task_queue=queue, workflows=[WatchProbe],
                      workflow_runner=UnsandboxedWorkflowRunner()):
        async with watcher(temporal_client, queue, world):
            handle = await temporal_client.start_workflow(
                WatchProbe.run, WatchRequest(spec=spec, variables={}), id=f"probe-{queue}", task_queue=queue)
            while world.count("canary.evaluate_check") < 6:
                await asyncio.sleep(0.05)
        before = world.count("canary.evaluate_check")  # the worker is gone: these looks were all it took
        async with watcher(temporal_client, queue, world):
            result = await asyncio.wait_for(handle.result(), 30)
    assert result.end is End.PASSED and result.state.checks["errors"].successes == count
    # Resumed from the heartbeat: only the looks after its last one are taken again, not all of them.
    assert world.count("canary.evaluate_check") < count + before - 2, (before, world.count("canary.evaluate_check"))


def _analysis(duration: str = "30m") -> Any:
    return canary([{"setWeight": 25},
                   {"analysis": {"duration": duration, "checks": [check(failureLimit=1000), check("latency")]}},
                   {"setWeight": 50}])


async def _history_events(client: Client, workflow_id: str) -> int:
    return len([e async for e in client.get_workflow_handle(workflow_id).fetch_history_events()])


@pytest.mark.parametrize("control", ["abort", "promote"])
async def test_abort_and_promote_act_at_once_during_a_long_analysis(temporal_client: Client, control: str) -> None:
    world = World()
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, _analysis())
        await until(handle, lambda s: world.count("canary.evaluate_check") >= 6)
        # Live measurements of the running watch: the pending activity's heartbeat details.
        described = await handle.describe()
        pending = [a for a in described.raw_description.pending_activities if a.activity_type.name == "watch.checks"]
        assert pending and pending[0].heartbeat_details.payloads
        live = with_live_looks(await handle.query(CanaryWorkflow.status), pending)
        assert {g.check for g in live.gates if g.measurements} == {"errors", "latency"}
        asked = asyncio.get_running_loop().time()
        await handle.execute_update(control, ControlRequest(by="test"))
        result = await asyncio.wait_for(handle.result(), 20)
        took = asyncio.get_running_loop().time() - asked
    assert result.phase == (Phase.ABORTED if control == "abort" else Phase.PROMOTED), result.reason
    assert took < 5, took
    # Six looks of two checks and the whole rollout: history grows with steps, not with looks.
    assert await _history_events(temporal_client, handle.id) < 80
    assert not [e for e in (await handle.fetch_history()).events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and e.activity_task_scheduled_event_attributes.activity_type.name == "canary.evaluate_check"]


async def test_a_failing_look_during_a_watch_rolls_back(temporal_client: Client) -> None:
    from orchestrator.gates.model import Phase as GatePhase
    from tests.engine.stand_ins import measurement

    world = World(looks={"latency": lambda i: measurement("latency", GatePhase.FAILED if i >= 2 else
                                                          GatePhase.SUCCESSFUL, value=1.0)})
    async with engine_worker(temporal_client, world) as queue:
        result = await asyncio.wait_for((await start_canary(temporal_client, queue, _analysis())).result(), 30)
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "gate", result.reason
    assert world.names().index("canary.reset_traffic") > 0
