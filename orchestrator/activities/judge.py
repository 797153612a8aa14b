"""Activities of the sequential judge: read one look from Prometheus and fold it into the judge's state.

The arithmetic (``judge_update``) runs here, next to the read, so workflow code needs neither numpy nor
scipy: the workflow keeps the returned ``JudgeState`` (bounded, a few kilobytes) and passes it to the
next look, and every look's result is in the history, so a replay never recomputes a statistic.
``judge.finish`` is cheap and pure as well; it is an activity only so the workflow can stay free of
numerical imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity

from orchestrator.activities.clients import ActivityClients
from orchestrator.activities.errors import temporal_errors
from orchestrator.gates.judge import (
    JudgeFinishRequest,
    JudgeLookRequest,
    JudgeLookResult,
    JudgeVerdict,
    judge_finish,
    judge_update,
)


class JudgeActivities(ActivityClients):
    def activities(self) -> list[Callable[..., Any]]:
        return [self.look, self.finish]

    @activity.defn(name="judge.look")
    @temporal_errors
    def look(self, req: JudgeLookRequest) -> JudgeLookResult:
        from orchestrator.gates.counts import read_look, read_look_sides
        from orchestrator.gates.dispersion import PAIRED
        from orchestrator.gates.evaluate import Side
        from orchestrator.gates.template import track_selector

        if req.control_variables is None:
            look = read_look(self.metrics, req.check, req.variables, req.state, req.at, service=True)
        else:
            subject = Side("treatment", {**req.variables, "track": "canary"},
                           kind="variant", selectors={"track_selector": track_selector("canary")})
            control = Side("control", {**req.control_variables, "track": "stable"},
                           kind="variant", selectors={"track_selector": track_selector("stable")})  # fmt: skip
            look = read_look_sides(self.metrics, req.check, subject, control, req.state, req.at, service=True)
            if look.start:
                # A flag's variants share their pods: no pod spread between the sides.
                look = look.model_copy(update={"noise": PAIRED})
        state, verdict = judge_update(req.check, req.state, look, alpha=req.alpha, checks=req.checks)
        return JudgeLookResult(state=state, verdict=verdict, measurement=verdict.measurement(look))

    @activity.defn(name="judge.finish")
    @temporal_errors
    def finish(self, req: JudgeFinishRequest) -> JudgeVerdict:
        return judge_finish(req.check, req.state, alpha=req.alpha, checks=req.checks)
