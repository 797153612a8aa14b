"""A GameDay: experiments run one after another as child workflows, stopping at the first whose
steady state does not recover.

    for each experiment:
        the previous experiment's workloads back at their ready count? else wait for them (bounded,
        as an event: "waiting for demo/shop to be back at 4 ready pods"); past the bound this
        experiment and the rest are skipped, with the reason
        ready counts of this experiment's workloads (what "back" means after it)
        run it as a child; stop unless it recovered

Each child is an ordinary ``ChaosExperimentWorkflow`` with its own id, ledger and revert, so a
GameDay adds ordering, the wait and the stop rule and nothing else. An experiment that was refused,
breached and did not recover, or failed counts as "did not recover" (its ``recovered`` is not
true); the experiments after it are listed as skipped. The wait exists because a steady state can
hold again before every replacement pod is ready: the next experiment would then meet a ready-pod
floor and be refused by a rail for the previous experiment's recovery, not for its own reasons.

Children are started with the parent-close policy ``REQUEST_CANCEL``: when the GameDay ends in any
way, terminated included, Temporal asks the running child to cancel, so its ``finally`` reverts the
fault. The default (``TERMINATE``) would kill the child mid-fault and leave the fault to the janitor.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.chaos import (
        GAMEDAY_TYPE,
        ChaosInput,
        ChaosPhase,
        ChaosStatus,
        Event,
        GameDayInput,
        GameDayResult,
        ReadyWait,
        memo_for,
    )
    from orchestrator.specs.duration import format_duration
    from workflows.chaos import ChaosExperimentWorkflow
    from workflows.engine import RETRY, describe

LOOK_TIMEOUT = timedelta(seconds=30)


@workflow.defn(name=GAMEDAY_TYPE)
class GameDayWorkflow:
    def __init__(self) -> None:
        self._result: GameDayResult | None = None

    @workflow.run
    async def run(self, inp: GameDayInput) -> GameDayResult:
        self._result = result = GameDayResult(name=inp.name)
        before: dict[str, int] = {}
        waits = workflow.patched("gameday-waits-for-recovery")  # GameDays started before it never wait
        for index, exp in enumerate(inp.experiments):
            name = exp.experiment.metadata.name
            if index:
                if inp.pause_between_seconds > 0:
                    await workflow.sleep(timedelta(seconds=inp.pause_between_seconds))
                unready = await self._wait_for_recovery(inp, inp.experiments[index - 1], before) if waits else None
                if unready is not None:
                    result.stopped_at = inp.experiments[index - 1].experiment.metadata.name
                    result.skipped = [e.experiment.metadata.name for e in inp.experiments[index:]]
                    result.skip_reasons = {n: unready if n == name else f"after {name} was skipped"
                                           for n in result.skipped}
                    self._log(f"{name} skipped: {unready}")
                    return result
            before = await self._ready(exp) if waits else {}
            child_id = f"{workflow.info().workflow_id}-{index + 1}-{name}"
            self._log(f"running {name}")
            try:
                status: ChaosStatus = await workflow.execute_child_workflow(
                    ChaosExperimentWorkflow.run, exp, id=child_id, memo=memo_for(exp),
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL)
            except ChildWorkflowError as err:
                status = ChaosStatus(name=name, namespace=exp.experiment.spec.target.namespace,
                                     fault=exp.experiment.spec.fault.type, phase=ChaosPhase.FAILED,
                                     reason=f"child workflow failed: {err.cause or err}", workflow_id=child_id)
            result.results.append(status)
            self._log(f"{name}: {status.phase.value}" + (f": {status.reason}" if status.reason else ""))
            if status.recovered is not True:
                result.stopped_at = name
                result.skipped = [e.experiment.metadata.name for e in inp.experiments[index + 1:]]
                return result
        result.passed = True
        return result

    @workflow.query
    def status(self) -> GameDayResult | None:
        return self._result

    def _log(self, message: str) -> None:
        assert self._result is not None
        self._result.events.append(Event(at=workflow.now(), message=message))
        workflow.logger.info(message)

    async def _ready(self, exp: ChaosInput) -> dict[str, int]:
        counts: dict[str, int] = await workflow.execute_activity(
            "chaos.ready_counts", exp.experiment, result_type=dict[str, int], start_to_close_timeout=LOOK_TIMEOUT,
            retry_policy=RETRY)
        return counts

    async def _wait_for_recovery(self, inp: GameDayInput, previous: ChaosInput, before: dict[str, int]
                                 ) -> str | None:
        """Wait until the previous experiment's workloads are back at their ready count; else why not."""
        bound = format_duration(timedelta(seconds=inp.recovery_wait_seconds))
        try:
            now = await self._ready(previous)
            behind = {key: n for key, n in before.items() if now.get(key, 0) < n}
            if not behind:
                return None
            for key, n in sorted(behind.items()):
                self._log(f"waiting for {key} to be back at {n} ready pods ({now.get(key, 0)} ready now; "
                          f"at most {bound})")
            within = inp.recovery_wait_seconds
            now = await workflow.execute_activity(
                "chaos.wait_ready", ReadyWait(experiment=previous.experiment, ready=behind, within_seconds=within),
                result_type=dict[str, int], start_to_close_timeout=timedelta(seconds=within) + LOOK_TIMEOUT,
                heartbeat_timeout=LOOK_TIMEOUT, retry_policy=RETRY)
        except ActivityError as err:
            return f"the ready pods of {previous.experiment.metadata.name}'s workloads could not be read: " \
                   f"{describe(err)}"
        late = {key: n for key, n in before.items() if now.get(key, 0) < n}
        if late:
            return "; ".join(f"{key} was not back at {n} ready pods within {bound} ({now.get(key, 0)} ready)"
                             for key, n in sorted(late.items()))
        self._log("back at " + ", ".join(f"{key}: {n} ready" for key, n in sorted(before.items())))
        return None


__all__ = ["GameDayWorkflow"]
