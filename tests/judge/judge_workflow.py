"""A minimal workflow driving the judge's activities look by look, as the canary's measurement loop will.

It carries ``JudgeState`` between looks itself (the state is the workflow's), stops at a final outcome or
after ``looks`` looks, and then asks ``judge.finish``. Times are passed in (backfilled data), so the
workflow sleeps only the interval and stays deterministic.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.gates.judge import (
        JudgeFinishRequest,
        JudgeLookRequest,
        JudgeLookResult,
        JudgeState,
        JudgeVerdict,
    )
    from orchestrator.specs.checks import Check


class JudgeRun(BaseModel):
    check: Check
    variables: dict[str, str]
    start: datetime
    looks: int
    alpha: float


class JudgeRunResult(BaseModel):
    verdict: JudgeVerdict
    messages: list[str]


@workflow.defn(name="test.JudgeRun")
class JudgeRunWorkflow:
    @workflow.run
    async def run(self, req: JudgeRun) -> JudgeRunResult:
        state = JudgeState()
        messages: list[str] = []
        step = req.check.interval
        for i in range(req.looks):
            result = await workflow.execute_activity(
                "judge.look",
                JudgeLookRequest(check=req.check, variables=req.variables, state=state, alpha=req.alpha,
                                 at=req.start + step * i),
                result_type=JudgeLookResult,
                start_to_close_timeout=timedelta(seconds=30),
            )  # fmt: skip
            state = result.state
            messages.append(result.measurement.message)
            if result.verdict.outcome != "running":
                return JudgeRunResult(verdict=result.verdict, messages=messages)
        verdict = await workflow.execute_activity(
            "judge.finish",
            JudgeFinishRequest(check=req.check, state=state, alpha=req.alpha),
            result_type=JudgeVerdict,
            start_to_close_timeout=timedelta(seconds=30),
        )
        return JudgeRunResult(verdict=verdict, messages=messages)
