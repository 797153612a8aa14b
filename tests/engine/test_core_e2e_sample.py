"""The decision core's invariants, sampled end to end on the real Temporal server (issue 17).

A seeded handful of interleavings: a canary whose background check answers a seeded sequence of
passed / inconclusive looks, operators' controls (pause, resume, promote, abort, cancel) sent after a
seeded number of looks, and a low history limit so runs hand over in the middle. Whatever happened,
the run ends, and:

* I1 — a promotion follows an accepted promote, or a passing background look at the last weight;
* I3 — a run stopped after it changed anything put the traffic back on the stable and removed the
  canary, after the last weight change, and ends with nothing stuck.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowUpdateFailedError

from orchestrator.api.canary import Phase
from orchestrator.api.common import ControlRequest
from orchestrator.gates.model import Phase as GatePhase
from tests.engine.stand_ins import World, engine_worker, measurement
from tests.engine.test_engine import canary, check, start_canary
from workflows.canary import CanaryWorkflow

pytestmark = pytest.mark.timeout(120)

# Seeds chosen for spread: a decision pause that times out after a hand-over (0), a pause by hand and two
# hand-overs (1), a cancellation (2), a decision pause that times out within the first run (4).
SEEDS = (0, 1, 2, 4)
CONTROLS = ("pause", "resume", "resume", "promote", "abort", "cancel", "none", "none", "none", "none")


async def _after_looks(world: World, n: int, handle: Any) -> bool:
    """Until the background check was looked at ``n`` times; False when the run ended first."""
    for _ in range(300):
        if world.count("canary.evaluate_check") >= n:
            return True
        if (await handle.describe()).status.name != "RUNNING":
            return False
        await asyncio.sleep(0.05)
    return False


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_sampled_interleaving_keeps_the_invariants(temporal_client: Client, seed: int) -> None:
    rng = random.Random(seed)
    answers = [rng.choice([GatePhase.SUCCESSFUL, GatePhase.SUCCESSFUL, GatePhase.INCONCLUSIVE]) for _ in range(200)]
    world = World(looks={"bg": lambda i: measurement("bg", answers[i])})
    model = canary([{"setWeight": 25}, {"pause": {"duration": "4s"}}, {"setWeight": 50}, {"pause": {"duration": "4s"}}],
                   backgroundChecks=[check("bg", inconclusiveLimit=rng.choice([0, 1]))],
                   onInconclusive={"action": "pause", "timeout": "3s"})
    plan = [(rng.randint(1, 3), rng.choice(CONTROLS)) for _ in range(3)]
    accepted: list[str] = []
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model, history_limit=rng.choice([70, 120]))
        looks = 0
        for gap, control in plan:
            looks += gap
            if control == "none" or not await _after_looks(world, looks, handle):
                continue
            if control == "cancel":
                await handle.cancel()
                accepted.append(control)
                break
            try:
                await handle.execute_update(control, ControlRequest(by="sample"))
                accepted.append(control)
            except WorkflowUpdateFailedError:
                pass  # refused by its validator (nothing to resume, the run is stopping, ...): no transition
            if control == "pause":  # a pause by hand is resumed, or the sample would wait for ever
                await _after_looks(world, looks + 2, handle)
                try:
                    await handle.execute_update(CanaryWorkflow.resume, ControlRequest(by="sample"))
                except WorkflowUpdateFailedError:
                    pass
        try:
            result = await asyncio.wait_for(handle.result(), 60)
        except WorkflowFailureError:
            assert "cancel" in accepted, "only a cancellation ends a run without a result"
            result = await handle.query(CanaryWorkflow.status)
    calls = world.names()
    if result.phase == Phase.PROMOTED:
        last_weight = max(i for i, n in enumerate(calls) if n == "canary.set_weight")
        promoted_at = calls.index("canary.update_stable")
        looks_then = [i for i, (n, _) in enumerate(world.calls) if n == "canary.evaluate_check" and
                      last_weight < i < promoted_at]
        passed = bool(looks_then) and answers[sum(1 for n in calls[:looks_then[-1]]
                                                  if n == "canary.evaluate_check")] is GatePhase.SUCCESSFUL
        assert "promote" in accepted or passed, (seed, plan, accepted, result.events)
    else:
        assert result.phase in (Phase.ROLLED_BACK, Phase.ABORTED), (seed, result.phase, result.reason)
        last_weight = max(i for i, n in enumerate(calls) if n == "canary.set_weight")
        undo = [n for n in calls[last_weight:] if n in ("canary.reset_traffic", "canary.delete_copy")]
        assert undo == ["canary.reset_traffic", "canary.delete_copy"], (seed, plan, calls)
        assert result.stuck is None
