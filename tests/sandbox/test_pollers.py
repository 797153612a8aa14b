"""The worker check and the bounded control request, against the real Temporal dev server.

Given a task queue nobody polls, commands are told at once; given a worker that just went
away (still listed as a recent poller), a control request ends after its timeout with a
message instead of hanging.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from orchestrator.client.pollers import ControlTimeoutError, NoWorkerError, bounded_control, pollers, require_worker
from orchestrator.config import Settings

pytestmark = pytest.mark.timeout(120)


@workflow.defn(name="PollerProbe")
class PollerProbe:
    """A workflow that waits until told to stop, through an update."""

    def __init__(self) -> None:
        self.stopped = False

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.stopped)
        return "stopped"

    @workflow.update
    async def stop(self) -> str:
        self.stopped = True
        return "stopping"


def settings_for(address: str, task_queue: str) -> Settings:
    return Settings(temporal_address=address, task_queue=task_queue)


async def test_no_poller_is_reported_at_once(temporal_client: Client, temporal_address: str, task_queue: str) -> None:
    started = time.monotonic()
    assert await pollers(temporal_client, "default", task_queue) == []
    with pytest.raises(NoWorkerError) as err:
        await require_worker(temporal_client, settings_for(temporal_address, task_queue), "nothing was started")
    assert time.monotonic() - started < 5
    message = str(err.value)
    assert f"no worker polls task queue {task_queue!r}" in message
    assert "nothing was started" in message and "orchestrator worker" in message
    assert err.value.exit_code == 3


async def test_a_running_worker_is_listed_and_answers(temporal_client: Client, temporal_address: str,
                                                      task_queue: str) -> None:
    async with Worker(temporal_client, task_queue=task_queue, workflows=[PollerProbe]):
        deadline = time.monotonic() + 10
        while not await pollers(temporal_client, "default", task_queue):
            assert time.monotonic() < deadline, "the running worker never showed up as a poller"
            await asyncio.sleep(0.2)
        handle = await temporal_client.start_workflow(PollerProbe.run, id=f"probe-{task_queue}", task_queue=task_queue)
        answer = await bounded_control(
            temporal_client, settings_for(temporal_address, task_queue), handle.id, "probe", "stop",
            handle.execute_update(PollerProbe.stop), timeout=20)
        assert answer == "stopping"
        assert await handle.result() == "stopped"


async def test_control_to_a_workflow_whose_queue_has_no_worker_is_not_sent(
    temporal_client: Client, temporal_address: str, task_queue: str
) -> None:
    # The settings name another queue: the check must look at the workflow's own queue.
    handle = await temporal_client.start_workflow(PollerProbe.run, id=f"probe-{task_queue}", task_queue=task_queue,
                                                  execution_timeout=timedelta(minutes=5))
    try:
        started = time.monotonic()
        with pytest.raises(NoWorkerError) as err:
            await bounded_control(temporal_client, settings_for(temporal_address, "somewhere-else"), handle.id,
                                  "rollout", "abort", handle.execute_update(PollerProbe.stop), timeout=20)
        assert time.monotonic() - started < 5
        assert f"no worker polls task queue {task_queue!r}" in str(err.value)
        assert "abort was not sent" in str(err.value) and "until a worker returns" in str(err.value)
    finally:
        await handle.terminate("test over")


async def test_a_worker_that_just_left_makes_the_request_time_out_with_a_message(
    temporal_client: Client, temporal_address: str, task_queue: str
) -> None:
    async with Worker(temporal_client, task_queue=task_queue, workflows=[PollerProbe]):
        deadline = time.monotonic() + 10
        while not await pollers(temporal_client, "default", task_queue):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    # The worker is gone but polled seconds ago: it is still listed, and nothing will answer.
    handle = await temporal_client.start_workflow(PollerProbe.run, id=f"probe-{task_queue}", task_queue=task_queue,
                                                  execution_timeout=timedelta(minutes=5))
    try:
        assert await pollers(temporal_client, "default", task_queue)
        started = time.monotonic()
        with pytest.raises(ControlTimeoutError) as err:
            await bounded_control(temporal_client, settings_for(temporal_address, task_queue), handle.id,
                                  "rollout", "abort", handle.execute_update(PollerProbe.stop), timeout=3)
        assert 2.5 < time.monotonic() - started < 10
        assert "abort got no answer within 3s" in str(err.value)
        assert "when a worker next runs the rollout" in str(err.value)
    finally:
        await handle.terminate("test over")
