"""Record the histories that ``test_replay.py`` replays: run this once per release of workflow code.

    .venv/bin/python -m tests.engine.record_histories

Each history is a real run of the current workflows (on a throwaway Temporal dev server, with the
stand-in activities) saved as JSON. Replaying them in ``make test`` proves that later code changes
can still replay rollouts that are running when a worker is upgraded; a change that cannot must be
guarded with ``workflow.patched`` (see docs/upgrades.md).
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.api.canary import CanaryInput
from orchestrator.api.common import ControlRequest
from orchestrator.api.flags import FlagRampInput
from orchestrator.gates.model import Phase
from tests.engine.stand_ins import World, engine_worker, measurement
from tests.engine.test_engine import canary, check, ramp
from tests.fixtures_temporal import _wait_port, free_port, temporal_binary
from workflows.canary import CanaryWorkflow
from workflows.flag_ramp import FlagRampWorkflow

HERE = Path(__file__).parent / "histories"


async def record(client: Client) -> None:
    async def save(name: str, handle: Any) -> None:
        await handle.result()
        (HERE / f"{name}.json").write_text((await handle.fetch_history()).to_json())

    world = World()
    async with engine_worker(client, world) as queue:
        model = canary([{"setWeight": 25}, {"pause": {"duration": "1s"}},
                        {"analysis": {"duration": "3s", "checks": [check()]}}, {"setWeight": 50}],
                       backgroundChecks=[check("bg")])
        await save("canary-promoted", await client.start_workflow(
            CanaryWorkflow.run, CanaryInput(rollout=model), id=f"c1-{queue}", task_queue=queue))
    world = World(looks={"errors": lambda i: measurement("errors", Phase.FAILED, value=0.3)})
    async with engine_worker(client, world) as queue:
        model = canary([{"setWeight": 25}, {"analysis": {"checks": [check(count=2)]}}])
        await save("canary-rolled-back", await client.start_workflow(
            CanaryWorkflow.run, CanaryInput(rollout=model), id=f"c2-{queue}", task_queue=queue))
    world = World(failing={"canary.reset_traffic": 1})
    async with engine_worker(client, world) as queue:
        handle = await client.start_workflow(CanaryWorkflow.run, CanaryInput(rollout=canary(
            [{"setWeight": 25}, {"pause": {"duration": "60s"}}])), id=f"c3-{queue}", task_queue=queue)
        while (await handle.query(CanaryWorkflow.status)).step < 1:
            await asyncio.sleep(0.1)
        await handle.execute_update(CanaryWorkflow.abort, ControlRequest(by="recorder"))
        while (await handle.query(CanaryWorkflow.status)).stuck is None:
            await asyncio.sleep(0.1)
        await handle.execute_update(CanaryWorkflow.retry, ControlRequest(by="recorder"))
        await save("canary-aborted-stuck-retried", handle)
    world = World(flag_percent=5.0)
    async with engine_worker(client, world) as queue:
        await save("ramp-completed", await client.start_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=ramp(checks=[check()])), id=f"r1-{queue}", task_queue=queue))
    world = World(looks={"errors": lambda i: measurement("errors", Phase.FAILED, value=0.3)})
    async with engine_worker(client, world) as queue:
        await save("ramp-reverted", await client.start_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=ramp(checks=[check()])), id=f"r2-{queue}", task_queue=queue))


async def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
                                   "--port", str(port), "--db-filename", f"{tmp}/t.db", "--log-level", "error"])
        try:
            _wait_port(port)
            client = await Client.connect(f"127.0.0.1:{port}", data_converter=pydantic_data_converter)
            await record(client)
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
