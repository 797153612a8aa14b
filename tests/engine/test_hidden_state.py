"""No hidden state (issue 17, defects 1-4), on the real Temporal server with the stand-in activities.

Each defect lived at an interleaving: a pause held only by a background task, a hand-over that carried
the cursor but not the pending decision, a cancellation landing inside compensation, a judge verdict
taken as final. Each test below builds that interleaving and checks the run decides as the rules say.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import CancelledError

from orchestrator.api.canary import Phase
from orchestrator.api.common import ControlRequest
from orchestrator.api.flags import FlagRampInput, FlagRampStatus
from orchestrator.api.flags import Phase as RampPhase
from orchestrator.gates.judge import JudgeLookRequest, JudgeLookResult, JudgeVerdict, Outcome
from orchestrator.gates.model import Phase as GatePhase
from tests.engine.stand_ins import World, engine_worker, measurement
from tests.engine.test_engine import canary, check, ramp, start_canary, until
from workflows.canary import CanaryWorkflow
from workflows.flag_ramp import FlagRampWorkflow

pytestmark = pytest.mark.timeout(120)

INCONCLUSIVE = {"bg": lambda i: measurement("bg", GatePhase.INCONCLUSIVE, message="no traffic to compare")}


async def test_an_undecided_background_check_stops_the_promotion(temporal_client: Client) -> None:
    # Defect 1: the last step completed, the waiting check was cancelled and the canary promoted.
    world = World(looks=INCONCLUSIVE)
    model = canary([{"setWeight": 25}, {"pause": {"duration": "2s"}}], backgroundChecks=[check("bg")],
                   onInconclusive={"action": "pause", "timeout": "5s"})
    async with engine_worker(temporal_client, world) as queue:
        result = await asyncio.wait_for((await start_canary(temporal_client, queue, model)).result(), 30)
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "inconclusive", result.reason
    assert world.count("canary.update_stable") == 0, "nothing promoted without a decision"


def _paused_at(events: list[Any]) -> Any:
    return next(e.at for e in events if e.message.startswith("paused, no decision"))


async def test_a_decision_pause_and_its_deadline_survive_a_hand_over(temporal_client: Client) -> None:
    # Defect 2: the deadline was a local and the undecided verdict was skipped by the new run.
    world = World(looks=INCONCLUSIVE)
    # The analysis step keeps looking (and the history growing) while the background check waits.
    model = canary([{"setWeight": 25}, {"analysis": {"duration": "20s", "checks": [check("busy", failureLimit=1000)]}}],
                   backgroundChecks=[check("bg")],
                   onInconclusive={"action": "pause", "timeout": "8s"})
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model, history_limit=60)
        handed = await until(handle, lambda s: s.runs >= 2 and s.waiting_for is not None, timeout=30)
        assert handed.paused and handed.waiting_for and "decision" in handed.waiting_for, handed
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "inconclusive", result.reason
    assert "nobody decided" in (result.reason or "") and world.count("canary.update_stable") == 0
    assert result.rollback_started_at is not None
    late = (result.rollback_started_at - _paused_at(handed.events)).total_seconds()
    assert late < 8 + 3, f"the deadline moved with the hand-over: rolled back {late:.1f}s after the pause began"


async def _history_length(handle: WorkflowHandle[Any, Any]) -> int:
    return len([e async for e in handle.fetch_history_events()])


async def _ramp_paused_by_a_failed_gate(client: Client, world: World, queue: str, name: str, model: Any,
                                        history_limit: int | None = None) -> WorkflowHandle[Any, FlagRampStatus]:
    handle = await client.start_workflow(FlagRampWorkflow.run, FlagRampInput(ramp=model, history_limit=history_limit),
                                         id=f"ramp-{name}-{queue}", task_queue=queue)
    await until(handle, lambda s: s.paused or s.runs >= 2, query=FlagRampWorkflow.status)
    return handle


def _failing_once_ramp(timeout: str) -> Any:
    return ramp(checks=[check()], onFailure="pause", onInconclusive={"action": "pause", "timeout": timeout},
                stages=[{"percent": 20, "hold": "1s"}, {"percent": 50, "hold": "1s"}])


async def _probe_limit(client: Client, queue: str, timeout: str) -> int:
    """The history length at which a new run is due exactly when the decision pause begins."""
    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.FAILED, value=1)})
    async with engine_worker(client, world) as probe_queue:
        handle = await _ramp_paused_by_a_failed_gate(client, world, probe_queue, "probe", _failing_once_ramp(timeout))
        # The pause's wait is set up in the task whose start is two events before the end of the history.
        length = await _history_length(handle)
        await handle.terminate("probe over")
    return length - 2


async def test_a_ramp_paused_by_a_failed_gate_reverts_at_its_deadline_after_a_hand_over(
        temporal_client: Client) -> None:
    # Defect 2 (flag ramp): the hold was extended for ever while paused and the revert-on-timeout was lost.
    limit = await _probe_limit(temporal_client, "d2-timeout", "6s")
    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.FAILED, value=1)})
    async with engine_worker(temporal_client, world) as queue:
        handle = await _ramp_paused_by_a_failed_gate(temporal_client, world, queue, "t", _failing_once_ramp("6s"),
                                                     history_limit=limit)
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.runs >= 2, "the hand-over happened during the pause"
    assert result.phase == RampPhase.REVERTED and result.reason_kind == "gate", result.reason
    assert result.applied == [20.0, 0.0], "the ramp never went up past a failed gate"


async def test_a_ramp_resumed_after_a_hand_over_runs_the_stage_again(temporal_client: Client) -> None:
    # Defect 2 (flag ramp): on resume the stage counted as passed and the ramp went up past a failed gate.
    limit = await _probe_limit(temporal_client, "d2-resume", "1m")
    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.FAILED if i == 0 else GatePhase.SUCCESSFUL,
                                                         value=1 if i == 0 else 0.001)})
    async with engine_worker(temporal_client, world) as queue:
        handle = await _ramp_paused_by_a_failed_gate(temporal_client, world, queue, "r", _failing_once_ramp("1m"),
                                                     history_limit=limit)
        handed = await until(handle, lambda s: s.runs >= 2 and s.paused, query=FlagRampWorkflow.status)
        assert handed.stage == 0
        await handle.execute_update(FlagRampWorkflow.resume, ControlRequest(by="test"))
        result = await asyncio.wait_for(handle.result(), 30)
    assert result.phase == RampPhase.COMPLETED, result.reason
    assert [(r.percent, r.outcome) for r in result.history] == [(20, "resumed"), (20, "passed"), (50, "passed")]


async def _cancel_seen(handle: WorkflowHandle[Any, Any]) -> None:
    """Until the workflow has run a task after the cancellation request (it has seen the cancel)."""
    for _ in range(200):
        kinds = [e.event_type async for e in handle.fetch_history_events()]
        if EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED in kinds:
            after = kinds[kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED):]
            if EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in after:
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the workflow never saw the cancellation")


async def _ends_cancelled(handle: WorkflowHandle[Any, Any]) -> None:
    with pytest.raises(WorkflowFailureError) as failure:
        await asyncio.wait_for(handle.result(), 20)
    assert isinstance(failure.value.cause, CancelledError)


async def test_a_cancel_while_the_rollback_is_stuck_does_not_skip_it(temporal_client: Client) -> None:
    # Defect 3: a cancel during the slow re-attempt wait escaped: traffic stayed on the canary.
    world = World(failing={"canary.reset_traffic": -1})
    model = canary([{"setWeight": 25}, {"pause": {"duration": "1m"}}])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        await until(handle, lambda s: s.step == 1)
        await handle.execute_update(CanaryWorkflow.abort, ControlRequest(by="test"))
        await until(handle, lambda s: s.phase == Phase.ROLLBACK_STUCK)
        await handle.cancel()
        await _cancel_seen(handle)
        world.failing["canary.reset_traffic"] = 0  # the fix is deployed
        await handle.execute_update(CanaryWorkflow.retry, ControlRequest(by="test"))
        await _ends_cancelled(handle)
    assert world.count("canary.delete_copy") == 1, "the rollback ran to its end"
    assert world.stuck_reports[-1].stuck is False, "the stuck report was cleared"
    assert [a.outcome for n, a in world.calls if n == "notify.outcome"] == ["aborted"]


async def test_a_cancel_during_an_undo_step_is_not_a_failed_step(temporal_client: Client) -> None:
    # Defect 3: a cancel landing while an undo activity ran was counted as a failure (a spurious "stuck").
    world = World(held={"canary.reset_traffic": asyncio.Event()})
    model = canary([{"setWeight": 25}, {"pause": {"duration": "1m"}}])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        await until(handle, lambda s: s.step == 1)
        await handle.execute_update(CanaryWorkflow.abort, ControlRequest(by="test"))
        await until(handle, lambda s: world.count("held canary.reset_traffic") == 1)
        await handle.cancel()
        await _cancel_seen(handle)
        world.held["canary.reset_traffic"].set()
        await _ends_cancelled(handle)
    assert not world.stuck_reports, "nothing was stuck"
    assert world.count("canary.reset_traffic") == 1 and world.count("canary.delete_copy") == 1


async def test_a_background_judge_that_said_successful_keeps_looking(temporal_client: Client) -> None:
    # Defect 4: a background judge that was successful at the first weight watched nothing afterwards.
    looks: list[int] = []

    @activity.defn(name="judge.look")
    async def look(req: JudgeLookRequest) -> JudgeLookResult:
        looks.append(1)
        outcome = Outcome.SUCCESSFUL if len(looks) == 1 else Outcome.FAILED
        verdict = JudgeVerdict(check=req.check.name, outcome=outcome, reason="stand-in", message=str(outcome),
                               alpha=req.alpha)
        phase = GatePhase.SUCCESSFUL if outcome is Outcome.SUCCESSFUL else GatePhase.FAILED
        return JudgeLookResult(state=req.state, verdict=verdict, measurement=measurement(req.check.name, phase))

    judged = {"name": "judged", "interval": "1s", "judge": {
        "errors": 'sum by (pod) (x{app="{{app}}",{{track_selector}},code="500"})',
        "requests": 'sum by (pod) (x{app="{{app}}",{{track_selector}}})', "maxFalseRollback": "1%"}}
    model = canary([{"setWeight": 25}, {"pause": {"duration": "3s"}}, {"setWeight": 50}, {"pause": {"duration": "3s"}}],
                   backgroundChecks=[judged])
    async with engine_worker(temporal_client, World(), extra=[look]) as queue:
        result = await asyncio.wait_for((await start_canary(temporal_client, queue, model)).result(), 30)
    assert len(looks) >= 2, "the judge looked again after its first success"
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "gate", result.reason
