"""The shared engine's rules, on the real Temporal server with stand-in activities (see stand_ins.py).

Each test names the defect of the engine issue it guards against (item numbers of issue 9).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError

from orchestrator.api.canary import CanaryInput, CanaryStatus, Phase
from orchestrator.api.common import ControlRequest
from orchestrator.api.flags import FlagRampInput
from orchestrator.api.flags import Phase as RampPhase
from orchestrator.gates.judge import JudgeLookRequest, JudgeLookResult, JudgeVerdict, Outcome
from orchestrator.gates.model import Phase as GatePhase
from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.flags import FlagRamp
from tests.engine.stand_ins import World, engine_worker, measurement
from workflows.canary import CanaryWorkflow
from workflows.flag_ramp import FlagRampWorkflow

pytestmark = pytest.mark.timeout(120)


def check(name: str = "errors", **extra: Any) -> dict[str, Any]:
    return {"name": name, "query": 'sum(rate(x{app="{{app}}"}[1m]))', "condition": {"max": 0.01},
            "interval": "1s", **extra}


def canary(steps: list[dict[str, Any]], **spec: Any) -> CanaryRollout:
    return CanaryRollout.model_validate({
        "kind": "CanaryRollout", "metadata": {"name": "app"},
        "spec": {"target": {"namespace": "prod", "deployment": "app"}, "change": {"image": "demo:2"},
                 "steps": steps, **spec}})


async def start_canary(client: Client, queue: str, model: CanaryRollout, **inp: Any
                       ) -> WorkflowHandle[Any, CanaryStatus]:
    if inp.get("history_limit") is not None:
        # A low history limit is how a test forces hand-overs; looks no longer add to the history (a step's
        # looks are one watch), so the watches hand over every second to add some.
        inp.setdefault("watch_seconds", 1.0)
    return await client.start_workflow(CanaryWorkflow.run, CanaryInput(rollout=model, **inp),
                                       id=f"canary-{queue}", task_queue=queue)


async def until(handle: WorkflowHandle[Any, Any], predicate: Any, timeout: float = 30,
                query: Any = CanaryWorkflow.status) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status = await handle.query(query)
        if predicate(status):
            return status
        assert loop.time() < deadline, f"not reached; last status: {status}"
        await asyncio.sleep(0.1)


async def test_promote_during_a_long_analysis_ends_it_at_once(temporal_client: Client) -> None:
    # Item 1: promote used to make the analysis loop spin (thousands of looks, history limit, no rollback).
    world = World()
    model = canary([{"setWeight": 25}, {"analysis": {"duration": "10m", "checks": [check(interval="30s")]}}])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        await until(handle, lambda s: world.count("canary.evaluate_check") >= 1)
        await handle.execute_update(CanaryWorkflow.promote, ControlRequest(by="test"))
        result = await asyncio.wait_for(handle.result(), 20)
    assert result.phase == Phase.PROMOTED
    assert world.count("canary.evaluate_check") <= 2
    history = await handle.fetch_history()
    assert len(history.events) < 120


async def test_promotion_and_rollback_never_remove_capacity_first(temporal_client: Client) -> None:
    # Item 2: the stable must be available on the new template before the canary gives up its traffic,
    # and the canary is removed only after the stable serves again.
    world = World()
    async with engine_worker(temporal_client, world) as queue:
        await (await start_canary(temporal_client, queue, canary([{"setWeight": 100}]))).result()
    order = [n for n in world.names() if n in (
        "canary.update_stable", "canary.wait_available", "canary.reset_traffic", "canary.delete_copy")]
    assert order == ["canary.update_stable", "canary.wait_available", "canary.reset_traffic", "canary.delete_copy"]

    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.FAILED, value=0.5)})
    model = canary([{"setWeight": 50}, {"analysis": {"checks": [check(count=1)]}}])
    async with engine_worker(temporal_client, world) as queue:
        result = await (await start_canary(temporal_client, queue, model)).result()
    assert result.phase == Phase.ROLLED_BACK
    undo = [n for n in world.names() if n in ("canary.reset_traffic", "canary.delete_copy")]
    assert undo == ["canary.reset_traffic", "canary.delete_copy"]


async def test_a_failing_undo_step_is_reported_stuck_and_lands_on_retry(temporal_client: Client) -> None:
    # Item 4: one try around every rollback step skipped the rest; a ValidationError was retried for ever,
    # silently. Now: non-retryable programming errors are reported at once (rollback-stuck, notification),
    # independent steps still run, dependent ones wait, and ``retry`` re-attempts after a fix.
    # Promotion begins (the stable gets the new template), then the stable never becomes available.
    world = World(failing={"canary.reset_traffic": -1, "canary.wait_available": 1})
    model = canary([{"setWeight": 50}])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        stuck = await until(handle, lambda s: s.phase == Phase.ROLLBACK_STUCK)
        assert stuck.stuck is not None and stuck.stuck.step == "traffic to stable"
        assert "cannot work today" in stuck.stuck.error
        # Promotion had begun: restoring the template does not depend on the traffic step.
        assert world.count("canary.restore_stable") == 1
        assert world.count("canary.delete_copy") == 0, "the canary serves until the stable does"
        for _ in range(100):  # the report is an activity right after the status changes
            if world.stuck_reports:
                break
            await asyncio.sleep(0.1)
        assert world.stuck_reports and world.stuck_reports[-1].stuck
        attempts = world.count("canary.reset_traffic")
        await asyncio.sleep(2)
        assert world.count("canary.reset_traffic") == attempts, "a programming error is never retried in a loop"
        world.failing["canary.reset_traffic"] = 0  # the fix is deployed
        await handle.execute_update(CanaryWorkflow.retry, ControlRequest(by="test"))
        result = await asyncio.wait_for(handle.result(), 20)
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "error"
    assert result.stuck is None and world.count("canary.delete_copy") == 1
    assert world.stuck_reports[-1].stuck is False


async def test_retry_is_refused_when_nothing_is_stuck(temporal_client: Client) -> None:
    world = World()
    model = canary([{"setWeight": 25}, {"pause": {"duration": "30s"}}])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        await until(handle, lambda s: s.step == 1)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(CanaryWorkflow.retry, ControlRequest())
        assert "nothing is stuck" in str(refused.value.cause)
        await handle.execute_update(CanaryWorkflow.abort, ControlRequest())
        assert (await handle.result()).phase == Phase.ABORTED


def ramp(**spec: Any) -> FlagRamp:
    return FlagRamp.model_validate({
        "kind": "FlagRamp", "metadata": {"name": "r"},
        "spec": {"provider": {"type": "flagd", "name": "missing"}, "flag": "new-checkout",
                 "stages": [{"percent": 20, "hold": "1s"}, {"percent": 50, "hold": "1s"}], **spec}})


async def test_a_ramp_that_cannot_read_its_flag_writes_nothing(temporal_client: Client) -> None:
    # Item 5: a failed read used to revert the flag to 0 %.
    world = World(flag_percent=10.0, failing={"flags.read": -1})
    async with engine_worker(temporal_client, world) as queue:
        result = await temporal_client.execute_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=ramp()), id=f"ramp-{queue}", task_queue=queue)
    assert result.phase == RampPhase.FAILED
    assert world.count("flags.set_percent") == 0 and world.flag_percent == 10.0


async def test_a_reverted_ramp_restores_what_was_served_before(temporal_client: Client) -> None:
    # Item 5: revert ignored the flag's initial percentage.
    world = World(flag_percent=10.0, looks={"errors": lambda i: measurement("errors", GatePhase.FAILED, value=1)})
    async with engine_worker(temporal_client, world) as queue:
        result = await temporal_client.execute_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=ramp(checks=[check()])), id=f"ramp-{queue}", task_queue=queue)
    assert result.phase == RampPhase.REVERTED
    assert result.applied == [20.0, 10.0] and world.flag_percent == 10.0


async def test_a_manually_paused_canary_continues_as_new_and_stays_paused(temporal_client: Client) -> None:
    # Item 6: a paused canary and analysis steps never continued-as-new; the promote flag and the checks'
    # counters were lost. A low history limit forces hand-overs while paused and while analysing.
    world = World()
    model = canary([{"setWeight": 25}, {"analysis": {"duration": "6s", "checks": [check()]}}, {"setWeight": 50}],
                   backgroundChecks=[check("bg", failureLimit=1000)])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model, history_limit=60)
        await until(handle, lambda s: s.step == 1)
        await handle.execute_update(CanaryWorkflow.pause, ControlRequest())
        paused = await until(handle, lambda s: s.runs >= 3 and s.step == 2, timeout=60)
        assert paused.paused and paused.phase == Phase.PAUSED
        counted = next(g for g in paused.gates if g.check == "bg").measurements
        await handle.execute_update(CanaryWorkflow.resume, ControlRequest())
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.phase == Phase.PROMOTED and result.runs >= 3
    bg = next(g for g in result.gates if g.check == "bg")
    assert bg.measurements >= counted, "a background check's counters are per rollout, not per run"
    assert [n for n in world.names() if n == "canary.set_weight"] == ["canary.set_weight"] * 2


async def test_a_flag_ramp_continues_as_new(temporal_client: Client) -> None:
    # Item 6: the flag ramp had no continue-as-new at all.
    world = World()
    model = ramp(checks=[check()], stages=[{"percent": 20, "hold": "8s"}, {"percent": 100, "hold": "0s"}])
    async with engine_worker(temporal_client, world) as queue:
        result = await temporal_client.execute_workflow(
            FlagRampWorkflow.run, FlagRampInput(ramp=model, history_limit=50), id=f"ramp-{queue}", task_queue=queue)
    assert result.phase == RampPhase.COMPLETED and result.runs >= 2
    assert result.applied == [20.0, 100.0]


def test_a_background_check_with_a_count_is_refused() -> None:
    # Item 7: a background check with ``count`` stopped watching after ``count`` successes.
    with pytest.raises(ValidationError, match="background check 'bg' has a count"):
        canary([{"setWeight": 10}], backgroundChecks=[check("bg", count=2)])


async def test_an_inconclusive_gate_pauses_then_rolls_back_at_its_timeout(temporal_client: Client) -> None:
    # Item 10: inconclusive meant rollback; now it pauses (default) with a timeout, notifies, never promotes.
    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.INCONCLUSIVE)})
    model = canary([{"setWeight": 25}, {"analysis": {"checks": [check(count=1)]}}],
                   onInconclusive={"action": "pause", "timeout": "3s"})
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        paused = await until(handle, lambda s: s.phase == Phase.PAUSED)
        assert paused.waiting_for and "decision" in paused.waiting_for
        assert any(a.outcome == "paused" for n, a in world.calls if n == "notify.outcome")
        result = await asyncio.wait_for(handle.result(), 20)
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "inconclusive"
    assert "nobody decided" in (result.reason or "")


async def test_resume_after_an_inconclusive_pause_measures_again(temporal_client: Client) -> None:
    world = World(looks={"errors": lambda i: measurement(
        "errors", GatePhase.INCONCLUSIVE if i == 0 else GatePhase.SUCCESSFUL)})
    model = canary([{"setWeight": 25}, {"analysis": {"checks": [check(count=1)]}}])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        await until(handle, lambda s: s.phase == Phase.PAUSED)
        await handle.execute_update(CanaryWorkflow.resume, ControlRequest())
        result = await asyncio.wait_for(handle.result(), 20)
    assert result.phase == Phase.PROMOTED and world.count("canary.evaluate_check") == 2


async def test_on_inconclusive_rollback_rolls_back_at_once(temporal_client: Client) -> None:
    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.INCONCLUSIVE)})
    model = canary([{"setWeight": 25}, {"analysis": {"checks": [check(count=1)]}}],
                   onInconclusive={"action": "rollback"})
    async with engine_worker(temporal_client, world) as queue:
        result = await (await start_canary(temporal_client, queue, model)).result()
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "inconclusive"


async def test_waiting_for_data_is_not_no_data(temporal_client: Client) -> None:
    # Item 12: a look before the canary's first scrape counted as "no data" and rolled good canaries back.
    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.FAILED, no_data=True) if i < 3
                         else measurement("errors")})
    model = canary([{"setWeight": 25}, {"analysis": {"checks": [check(count=2, waitForData="30s")]}}])
    async with engine_worker(temporal_client, world) as queue:
        result = await (await start_canary(temporal_client, queue, model)).result()
    assert result.phase == Phase.PROMOTED, result.reason
    [gate] = result.gates
    assert gate.measurements == 2 and gate.failures == 0, "looks while waiting for data are not counted"


async def test_data_that_never_appears_is_no_data_after_the_deadline(temporal_client: Client) -> None:
    world = World(looks={"errors": lambda i: measurement("errors", GatePhase.FAILED, no_data=True)})
    model = canary([{"setWeight": 25}, {"analysis": {"checks": [check(count=2, waitForData="3s")]}}])
    async with engine_worker(temporal_client, world) as queue:
        result = await (await start_canary(temporal_client, queue, model)).result()
    assert result.phase == Phase.ROLLED_BACK and result.reason_kind == "gate"
    assert result.decisive_gate is not None and result.decisive_gate.failures == 1
    assert world.count("canary.evaluate_check") >= 3


async def test_data_that_vanishes_is_no_data_at_once(temporal_client: Client) -> None:
    world = World(looks={"errors": lambda i: measurement("errors") if i == 0
                         else measurement("errors", GatePhase.FAILED, no_data=True)})
    model = canary([{"setWeight": 25}, {"analysis": {"checks": [check(count=3, waitForData="5m")]}}])
    async with engine_worker(temporal_client, world) as queue:
        result = await (await start_canary(temporal_client, queue, model)).result()
    assert result.phase == Phase.ROLLED_BACK and world.count("canary.evaluate_check") == 2


async def test_status_keeps_the_last_events_only(temporal_client: Client) -> None:
    # Item 13: every log line was appended to the status for ever.
    from orchestrator.api.common import EVENTS_KEPT

    world = World()
    steps = [{"setWeight": w} for w in range(1, 61)]
    async with engine_worker(temporal_client, world) as queue:
        result = await (await start_canary(temporal_client, queue, canary(steps))).result()
    assert result.phase == Phase.PROMOTED
    assert len(result.events) == EVENTS_KEPT and result.events_dropped > 0
    assert result.events[-1].message.startswith("promoted")


async def test_effective_weight_is_reported(temporal_client: Client) -> None:
    # Item 8 (workflow side): on 4 replicas, 5 % is really 0 or 25 %; the status says what is real.
    world = World(replicas=4)
    model = canary([{"setWeight": 20}, {"pause": {"duration": "30s"}}])
    async with engine_worker(temporal_client, world) as queue:
        handle = await start_canary(temporal_client, queue, model)
        status = await until(handle, lambda s: s.step == 1)
        await handle.execute_update(CanaryWorkflow.abort, ControlRequest())
        await handle.result()
    assert status.weight == 20 and status.effective_weight == 25.0 and "1 of 4 pods" in status.weight_detail


async def test_a_refusing_rail_stops_the_canary_before_it_changes_anything(temporal_client: Client) -> None:
    # Item 11 (workflow side): the pre-flight rails run first; a refusal names the rail and touches nothing.
    world = World(refuse="mutual-exclusion: chaos experiment chaos-prod-kill is active on prod/app")
    async with engine_worker(temporal_client, world) as queue:
        result = await (await start_canary(temporal_client, queue, canary([{"setWeight": 25}]))).result()
    assert result.phase == Phase.REFUSED and "chaos-prod-kill" in (result.reason or "")
    assert world.names()[0] == "rails.check"
    assert not [n for n in world.names() if n.startswith("canary.")], "nothing touched"


async def test_the_false_rollback_bound_is_the_rollouts_split_over_its_judge_checks(temporal_client: Client) -> None:
    # Issue 11: two judge checks declaring 1 % must each test at 0.5 %, so the rollout rolls back a good
    # release with probability at most 1 %, not 2 %.
    seen: list[tuple[str, float, int]] = []

    @activity.defn(name="judge.look")
    async def look(req: JudgeLookRequest) -> JudgeLookResult:
        seen.append((req.check.name, req.alpha, req.checks))
        verdict = JudgeVerdict(check=req.check.name, outcome=Outcome.SUCCESSFUL, reason="within-tolerance",
                               message="within tolerance", alpha=req.alpha)
        return JudgeLookResult(state=req.state, verdict=verdict, measurement=measurement(req.check.name))

    def judged(name: str) -> dict[str, Any]:
        return {"name": name, "interval": "1s", "judge": {
            "errors": 'sum by (pod) (x{app="{{app}}",{{track_selector}},code="500"})',
            "requests": 'sum by (pod) (x{app="{{app}}",{{track_selector}}})', "maxFalseRollback": "1%"}}

    model = canary([{"setWeight": 25}, {"analysis": {"duration": "1m", "checks": [judged("errors-25")]}},
                    {"setWeight": 50}, {"analysis": {"duration": "1m", "checks": [judged("errors-50")]}}])
    async with engine_worker(temporal_client, World(), extra=[look]) as queue:
        result = await asyncio.wait_for((await start_canary(temporal_client, queue, model)).result(), 60)
    assert result.phase == Phase.PROMOTED
    assert {name for name, _, _ in seen} == {"errors-25", "errors-50"}
    assert all(alpha == pytest.approx(0.005) and checks == 2 for _, alpha, checks in seen), seen


async def test_following_a_run_whose_status_cannot_be_read_says_so(
    temporal_client: Client, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `canary run --wait` and `status --watch` used to print nothing while no worker answered the query.
    from orchestrator.cli import canary as canary_cli
    from orchestrator.cli import follow
    from orchestrator.config import Settings

    monkeypatch.setattr(follow, "QUERY_TIMEOUT", 0.5)
    monkeypatch.setattr(follow, "NOTICE_AFTER", 0.0)
    handle = await start_canary(temporal_client, "nobody-polls-this-queue", canary([{"setWeight": 25}]))
    try:
        code = await canary_cli.follow(temporal_client, handle, "text", 3.0, False, Settings())
    finally:
        await handle.terminate("test over")
    err = capsys.readouterr().err
    assert code == canary_cli.EXIT_PENDING
    assert f"status of {handle.id} unreadable" in err and "no worker answered within 0.5 s" in err, err
    assert err.count("unreadable") == 1, "one notice, not one per poll"


@workflow.defn(name="CanaryRollout", sandboxed=False)
class _UnrunnableCanary:
    """What a worker that cannot run a rollout's history does (a bad upgrade): every workflow task fails."""

    @workflow.run
    async def run(self, inp: CanaryInput) -> None:
        raise RuntimeError("stand-in for nondeterminism: this code cannot replay that history")


async def test_status_of_a_run_whose_workflow_task_fails_says_why(temporal_client: Client, temporal_address: str,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from temporalio.worker import Worker

    from orchestrator.cli import follow
    from tests.frontdoor.helpers import invoke

    monkeypatch.setattr(follow, "QUERY_TIMEOUT", 1.0)  # such a run answers no query: it times out

    queue = f"unrunnable-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[_UnrunnableCanary]):
        handle = await start_canary(temporal_client, queue, canary([{"setWeight": 25}]))
        try:
            for _ in range(50):  # the first workflow task has failed once it is in history
                kinds = [e.event_type async for e in handle.fetch_history_events()]
                if EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds:
                    break
                await asyncio.sleep(0.1)
            env = {"ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address}
            outcome = await asyncio.to_thread(invoke, ["canary", "status", handle.id], env)
        finally:
            await handle.terminate("test over")
    assert outcome.code != 0, outcome
    assert f"rollout {handle.id} exists but its status cannot be read: its workflow task fails" in outcome.err
    assert "this code cannot replay that history" in outcome.err and "Traceback" not in outcome.err
