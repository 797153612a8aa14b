"""The feature-flag ramp, as one durable workflow.

    read the flag (what a revert will restore) ─► for each stage (percent, hold):
        set the percentage (idempotent activity; recorded in ``applied``)
        hold: look at every check once per interval; a failing verdict stops the ramp
        at the end of the hold: enough traffic? (minimumSample)
            no  → extend by extendBy, up to maxExtensions, then "not enough traffic"
            yes → checks still running are decided; the next stage begins
    a failed gate          → onFailure: revert, or pause (the flag stays; resume runs the stage again)
    no decision            → onInconclusive (not enough traffic, inconclusive or unmeasurable gates):
                             pause with a timeout, or revert — never onward
    abort, cancellation, unexpected error → revert: the flag goes back to what it served before the
                             ramp (a kill switch's abort leaves it off)
    promote → 100 % at once, remaining stages skipped

Controls, waits, the measurement loop, continue-as-new and compensation are the engine's
(``workflows/engine.py``). Every percentage change is one activity that writes nothing when the
provider already has that value, and completed activities are never re-run on replay: a worker
killed mid-ramp is replaced by one that carries on without applying any stage twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.flag_requests import FlagCheckRequest, FlagRef, SampleRequest, SetPercentRequest
    from orchestrator.api.flags import (
        WORKFLOW_TYPE,
        FlagRampInput,
        FlagRampState,
        FlagRampStatus,
        Phase,
        StageRecord,
    )
    from orchestrator.api.requests import NotifyRequest
    from orchestrator.flags.base import Allocation, Change
    from orchestrator.gates.model import CheckPhase, CheckStatus
    from orchestrator.rails.models import RailsRequest
    from orchestrator.specs.checks import Check, OnInconclusive
    from orchestrator.specs.flags import OnFailure, Stage, ramp_workflow_id
    from workflows.engine import ContinueAsNew, Controls, Engine, Judges, MeasureAgain, Stop, UndoStep

FINAL_BY_STOP = {"abort": Phase.ABORTED, "kill": Phase.ABORTED, "cancelled": Phase.ABORTED,
                 "refused": Phase.REFUSED}


@workflow.defn(name=WORKFLOW_TYPE)
class FlagRampWorkflow(Controls):
    @workflow.init
    def __init__(self, inp: FlagRampInput) -> None:
        spec = inp.ramp.spec
        self._inp = inp
        self._ref = FlagRef(provider=spec.provider, flag=spec.flag, variant=spec.variant, control=spec.control)
        self._state = inp.state or FlagRampState(status=FlagRampStatus(
            name=inp.ramp.metadata.name, workflow_id=ramp_workflow_id(spec.provider.type, spec.flag),
            provider=spec.provider.type, flag=spec.flag, variant=spec.variant, control=spec.control,
            phase=Phase.STARTING, stage=0, stages=len(spec.stages)))
        self._status = self._state.status
        self.engine = Engine(kind="flag_ramp", name=self._status.name, status=self._status,
                             controls=self._state.controls,
                             supports=frozenset({"pause", "resume", "promote", "abort", "retry"}),
                             history_limit=inp.history_limit, stuck_phase=self._stuck_phase,
                             show_paused=self._show_paused, undo_says="reverting")
        self._judges = Judges(self.engine, self._state.judges, spec.checks, self._variables,
                              lambda: {**self._variables(), "variant": self._state.control_variant},
                              step_since=lambda: self._state.stage_started_at)

    @workflow.query
    def status(self) -> FlagRampStatus:
        return self._status

    @workflow.run
    async def run(self, inp: FlagRampInput) -> FlagRampStatus:
        try:
            await self.engine.run(self._walk, self._revert)
        except ContinueAsNew:
            self._status.runs += 1
            await self.engine.hand_over(FlagRampInput(ramp=inp.ramp, history_limit=inp.history_limit,
                                                      state=self._state))
        except asyncio.CancelledError:
            # Reverted to the end already (the engine shields compensation): say so, then end cancelled.
            self.engine.stage = "done"
            await self._notify()
            raise
        self.engine.stage = "done"
        await self._notify()
        return self._status

    # ---- the algorithm -------------------------------------------------------------------

    async def _walk(self) -> None:
        spec = self._inp.ramp.spec
        state = self._state
        if state.initial is None:
            self._status.started_at = workflow.now()
            self._status.preflight = await self.engine.preflight(RailsRequest(
                kind="flag", spec=self._inp.ramp, workflow_id=workflow.info().workflow_id, at=workflow.now()))
            # Read before anything is written: a ramp that cannot start leaves the flag as it was.
            initial: Allocation = await self.engine.act("flags.read", self._ref, Allocation)
            state.initial = initial
            self._status.initial_percent = self._status.percent = initial.percent
            state.control_variant = self._status.control = spec.control or initial.control or "off"
            self.engine.log(f"{spec.flag} ({spec.provider.type}) serves {spec.variant} to {initial.percent:g}% "
                            f"({initial.detail})")
            self._status.phase = Phase.RAMPING
        else:
            self.engine.log(f"continued as a new run at stage {self._status.stage + 1} (history size)")
        while self._status.stage < len(spec.stages):
            if state.stage_started_at is None:  # a stage already under way goes on while paused
                if self.engine.should_continue():
                    raise ContinueAsNew()
                await self.engine.hold_while_paused()
            if state.controls.promote:
                break
            self.engine.raise_if_stopped()
            if await self._run_stage(self._status.stage, spec.stages[self._status.stage]):
                self._status.stage += 1
            state.stage_started_at = state.stage_end = None
            state.checks = {}
        self._status.stage = len(spec.stages)
        self.engine.raise_if_stopped()
        self.engine.stage = "finishing"
        if state.controls.promote:
            self.engine.log("promote requested: remaining stages skipped")
            await self._apply(100.0)
            self._finish(Phase.COMPLETED, "promoted on request: 100%")
        else:
            self._finish(Phase.COMPLETED, f"all {len(spec.stages)} stages passed at {spec.stages[-1].percent:g}%")

    async def _run_stage(self, index: int, stage: Stage) -> bool:
        """Apply and hold one stage; True when it passed, False when it runs again (resumed after a pause)."""
        spec = self._inp.ramp.spec
        state = self._state
        if state.stage_started_at is None:
            self._status.history.append(StageRecord(index=index, percent=stage.percent))
            await self._apply(stage.percent)
            state.stage_started_at = self._status.history[-1].applied_at = workflow.now()
            state.stage_end = state.stage_started_at + stage.hold
            state.sample_base = await self._sample() if spec.minimum_sample else None
            self.engine.log(f"stage {index + 1}/{len(spec.stages)}: {stage.percent:g}% for {stage.hold}")
        record = self._status.history[-1]
        self._status.gates = []
        try:
            await self.engine.measure(
                spec.checks, state.checks, self._evaluate, started=state.stage_started_at, until=state.stage_end,
                data_since=lambda: state.stage_started_at, on_verdict=self._on_verdict, publish=self._publish,
                extend=self._extend, hold=True, conclude=self._judges.conclude)
        except Stop as stop:
            record.outcome = {"traffic": "not-enough-traffic", "gate": "failed", "inconclusive": "failed"}.get(
                stop.kind, "aborted")
            record.ended_at = workflow.now()
            raise
        except MeasureAgain:
            record.outcome = "resumed"
            record.ended_at = workflow.now()
            return False
        record.ended_at = workflow.now()
        record.outcome = "promoted" if state.controls.promote else "passed"
        return True

    async def _extend(self, open_checks: list[Check]) -> datetime | None:
        """The hold is over: does the stage go on (paused, counting, not enough traffic) or end?"""
        state = self._state
        now = workflow.now()
        step = min([c.interval for c in self._inp.ramp.spec.checks] or [timedelta(seconds=5)])
        if state.controls.paused or any(c.count is not None for c in open_checks):
            return now + step  # gates keep watching; the stage ends once resumed / counted
        ms = self._inp.ramp.spec.minimum_sample
        if ms is None:
            return None
        record = self._status.history[-1]
        seen = self._increase(state.sample_base, await self._sample())
        record.sample = seen
        if seen >= ms.min:
            return None
        if record.extensions < ms.max_extensions:
            record.extensions += 1
            state.stage_end = now + ms.extend_by
            self.engine.log(f"not enough traffic yet ({seen:g} of {ms.min}): stage extended by {ms.extend_by} "
                            f"({record.extensions}/{ms.max_extensions})")
            return state.stage_end
        percent = self._inp.ramp.spec.stages[self._status.stage].percent
        reason = (f"not enough traffic at {percent:g}%: {seen:g} of {ms.min} needed after "
                  f"{record.extensions} extension(s) of {ms.extend_by}")
        self._status.not_enough_traffic = True
        if not await self._undecided(reason, None):
            return None
        self._status.not_enough_traffic = False
        raise MeasureAgain()

    async def _on_verdict(self, check: Check, status: CheckStatus) -> CheckStatus:
        percent = self._inp.ramp.spec.stages[self._status.stage].percent
        reason = f"gate failed at {percent:g}%: {status.reason}"
        if status.phase is CheckPhase.FAILED:
            if self._inp.ramp.spec.on_failure is not OnFailure.PAUSE:
                raise Stop("gate", reason, status)
            policy = OnInconclusive(action="pause", timeout=self._inp.ramp.spec.on_inconclusive.timeout)
            self._status.reason = reason
            again = await self.engine.no_decision(status.model_copy(update={"reason": reason}), policy, failed=True)
            self._status.reason = None
        else:
            again = await self._undecided(f"no decision at {percent:g}%: {status.reason}", status)
        if not again:
            return status  # promoted
        raise MeasureAgain()

    async def _undecided(self, reason: str, status: CheckStatus | None) -> bool:
        """Inconclusive or not enough traffic: the ramp's onInconclusive (pause with a timeout, or revert)."""
        gate = status or CheckStatus(check="minimumSample", phase=CheckPhase.INCONCLUSIVE, reason=reason)
        self._status.decisive_gate = status
        try:
            return await self.engine.no_decision(gate.model_copy(update={"reason": reason}),
                                                 self._inp.ramp.spec.on_inconclusive)
        except Stop as stop:
            raise Stop("traffic" if status is None else stop.kind, stop.reason, status) from None

    async def _revert(self, stop: Stop) -> None:
        """Compensation: the flag back to what it served before the ramp (off after a kill switch)."""
        self._status.phase = Phase.REVERTING
        self._status.reason = stop.reason
        self._status.reason_kind = stop.kind
        self._status.decisive_gate = stop.gate or self._status.decisive_gate
        self._status.not_enough_traffic = stop.kind == "traffic"
        self._status.paused = False
        initial = self._state.initial
        if initial is not None:
            target = 0.0 if stop.kind == "kill" else initial.percent
            self.engine.log(f"reverting to {target:g}%: {stop.reason}")
            await self.engine.compensate([UndoStep(f"set {self._ref.variant} to {target:g}%",
                                                   lambda: self._apply(target))])
        # A ramp that failed before it read the flag has written nothing, so nothing was reverted.
        self._finish(FINAL_BY_STOP.get(stop.kind, Phase.REVERTED if initial is not None else Phase.FAILED),
                     stop.reason)

    async def _apply(self, percent: float) -> None:
        change: Change = await self.engine.act(
            "flags.set_percent", SetPercentRequest(ref=self._ref, percent=percent), Change)
        self._status.applied.append(percent)
        self._status.percent = percent
        self.engine.log(f"{self._ref.variant} at {percent:g}%" + ("" if change.changed else " (already set)"))

    async def _sample(self) -> float | None:
        ms = self._inp.ramp.spec.minimum_sample
        assert ms is not None
        value: float | None = await self.engine.act(
            "flags.sample", SampleRequest(query=ms.query, variables=self._variables()), float)
        return value

    @staticmethod
    def _increase(base: float | None, now: float | None) -> float:
        if now is None:
            return 0.0
        if base is None or now < base:  # no series at the start, or a counter reset
            return now
        return now - base

    def _variables(self) -> dict[str, str]:
        spec = self._inp.ramp.spec
        out = {"variant": spec.variant, "target": spec.flag}
        if spec.target.namespace:
            out["namespace"] = spec.target.namespace
        if spec.target.app:
            out["app"] = spec.target.app
        return out

    @property
    def _evaluate(self) -> Any:
        spec = self._inp.ramp.spec
        return self._judges.evaluate(self.engine.evaluator("flags.evaluate_check", lambda check: FlagCheckRequest(
            check=check, variables=self._variables(), treatment=spec.variant, control=self._state.control_variant)))

    def _publish(self) -> None:
        self._status.gates = list(self._state.checks.values())
        if self._status.history:
            self._status.history[-1].gates = self._status.gates

    def _show_paused(self, paused: bool) -> None:
        if paused and self._status.phase == Phase.RAMPING:
            self._status.phase = Phase.PAUSED
        elif not paused and self._status.phase == Phase.PAUSED:
            self._status.phase = Phase.RAMPING

    def _stuck_phase(self, stuck: bool) -> None:
        self._status.phase = Phase.ROLLBACK_STUCK if stuck else Phase.REVERTING

    async def _notify(self) -> None:
        await self.engine.notify(NotifyRequest(
            kind="flag_ramp", name=self._status.name, outcome=self._status.phase.value, target=self._status.flag,
            reason=self._status.reason, workflow_id=workflow.info().workflow_id,
            reason_kind=self._status.reason_kind))

    def _finish(self, phase: Phase, reason: str) -> None:
        self._status.phase = phase
        self._status.reason = reason
        self._status.paused = False
        self._status.finished_at = workflow.now()
        self.engine.log(f"{phase.value}: {reason}")


__all__ = ["FlagRampWorkflow", "ramp_workflow_id"]
