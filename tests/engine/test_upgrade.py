"""A worker running code that cannot replay a running rollout must not end it (issue 9, workflow code upgrades).

Turning a nondeterminism error into a workflow failure skips ``finally``: the canary would stay at
N % traffic for ever. The worker leaves it a workflow-task failure, which Temporal retries, and the
rollout carries on once code that can replay it runs again.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from orchestrator.api.canary import CanaryInput, Phase
from orchestrator.worker import WORKFLOW_FAILURE_TYPES
from tests.engine.stand_ins import World
from tests.engine.test_engine import canary
from workflows.canary import CanaryWorkflow

pytestmark = pytest.mark.timeout(120)


@workflow.defn(name="CanaryRollout", sandboxed=False)
class RewrittenCanary:
    """Newer code whose first command differs from what the running history recorded."""

    @workflow.run
    async def run(self, inp: CanaryInput) -> None:
        await workflow.sleep(1)


async def test_code_that_cannot_replay_leaves_the_rollout_running_until_fixed(temporal_client: Client) -> None:
    world = World()
    queue = f"upgrade-{uuid.uuid4().hex[:8]}"
    handle = await temporal_client.start_workflow(
        CanaryWorkflow.run, CanaryInput(rollout=canary([{"setWeight": 25}, {"pause": {"duration": "4s"}}])),
        id=f"canary-{queue}", task_queue=queue)
    async with Worker(temporal_client, task_queue=queue, workflows=[CanaryWorkflow], activities=world.activities(),
                      workflow_failure_exception_types=WORKFLOW_FAILURE_TYPES):
        while (await handle.query(CanaryWorkflow.status)).step < 1:
            await asyncio.sleep(0.1)

    # The pause's timer fires while only the rewritten code polls: every workflow task fails.
    async with Worker(temporal_client, task_queue=queue, workflows=[RewrittenCanary], activities=world.activities(),
                      workflow_failure_exception_types=WORKFLOW_FAILURE_TYPES, max_cached_workflows=0):
        for _ in range(100):
            events = [e.event_type async for e in handle.fetch_history_events()]
            if EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in events:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the rewritten code never failed a workflow task")
        assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING

    # The fix is deployed (code that replays the history): the rollout goes on and finishes.
    async with Worker(temporal_client, task_queue=queue, workflows=[CanaryWorkflow], activities=world.activities(),
                      workflow_failure_exception_types=WORKFLOW_FAILURE_TYPES):
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.phase == Phase.PROMOTED
    assert world.count("canary.set_weight") == 1, "no step applied twice"
