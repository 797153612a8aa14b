"""A GameDay: experiments run one after another as child workflows, stopping at the first whose
steady state does not recover.

Each child is an ordinary ``ChaosExperimentWorkflow`` with its own id, ledger and revert, so a
GameDay adds ordering and the stop rule and nothing else. An experiment that was refused, breached
and did not recover, or failed counts as "did not recover" (its ``recovered`` is not true); the
experiments after it are listed as skipped. Cancelling the GameDay cancels the running child, which
reverts in its own ``finally``.

Children are started with the parent-close policy ``REQUEST_CANCEL``: when the GameDay ends in any
way, terminated included, Temporal asks the running child to cancel, so its ``finally`` reverts the
fault. The default (``TERMINATE``) would kill the child mid-fault and leave the fault to the janitor.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.chaos import (
        GAMEDAY_TYPE,
        ChaosPhase,
        ChaosStatus,
        GameDayInput,
        GameDayResult,
        memo_for,
    )
    from workflows.chaos import ChaosExperimentWorkflow


@workflow.defn(name=GAMEDAY_TYPE)
class GameDayWorkflow:
    def __init__(self) -> None:
        self._result: GameDayResult | None = None

    @workflow.run
    async def run(self, inp: GameDayInput) -> GameDayResult:
        self._result = result = GameDayResult(name=inp.name)
        for index, exp in enumerate(inp.experiments):
            if index and inp.pause_between_seconds > 0:
                await workflow.sleep(timedelta(seconds=inp.pause_between_seconds))
            name = exp.experiment.metadata.name
            child_id = f"{workflow.info().workflow_id}-{index + 1}-{name}"
            try:
                status: ChaosStatus = await workflow.execute_child_workflow(
                    ChaosExperimentWorkflow.run, exp, id=child_id, memo=memo_for(exp),
                    parent_close_policy=ParentClosePolicy.REQUEST_CANCEL)
            except ChildWorkflowError as err:
                status = ChaosStatus(name=name, namespace=exp.experiment.spec.target.namespace,
                                     fault=exp.experiment.spec.fault.type, phase=ChaosPhase.FAILED,
                                     reason=f"child workflow failed: {err.cause or err}", workflow_id=child_id)
            result.results.append(status)
            if status.recovered is not True:
                result.stopped_at = name
                result.skipped = [e.experiment.metadata.name for e in inp.experiments[index + 1:]]
                return result
        result.passed = True
        return result

    @workflow.query
    def status(self) -> GameDayResult | None:
        return self._result


__all__ = ["GameDayWorkflow"]
