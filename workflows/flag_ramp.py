"""The feature-flag ramp, as one durable workflow.

    read the flag ─► for each stage (percent, hold):
        set the percentage (idempotent activity; recorded in ``applied``)
        hold: evaluate every check at its interval; a failing verdict stops the ramp
        at the end of the hold: enough traffic? (minimumSample)
            no  → extend by extendBy, up to maxExtensions, then stop: "not enough traffic"
            yes → checks still running are decided; the next stage begins
    a stop (failing gate, not enough traffic, abort, cancellation, unexpected error)
        onFailure: revert → the flag goes back to 0 % (in ``finally``, so it survives cancellation)
        onFailure: pause  → the flag stays; the ramp waits for resume (the stage runs again),
                            promote or abort
    promote → 100 % at once, remaining stages skipped

Every percentage change is one activity that writes nothing when the provider already
has that value, and completed activities are never re-run on replay: a worker killed
mid-ramp is replaced by one that carries on without applying any stage twice.
Gates keep watching while the ramp is paused by hand; a paused stage just does not end.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from orchestrator.activities.flags import FlagCheckRequest, FlagRef, SampleRequest, SetPercentRequest
    from orchestrator.flags.base import Allocation, Change
    from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement
    from orchestrator.gates.model import Phase as GatePhase
    from orchestrator.gates.verdict import decide
    from orchestrator.specs.checks import Check
    from orchestrator.specs.flags import OnFailure, Stage, ramp_workflow_id
    from workflows.flag_ramp_models import (
        FINAL_PHASES,
        ControlRequest,
        ControlResponse,
        Event,
        FlagRampInput,
        FlagRampStatus,
        Phase,
        StageRecord,
    )

T = TypeVar("T")

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10), maximum_attempts=8)
# Reverting must eventually happen: keep trying for as long as it takes.
RETRY_FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=30), maximum_attempts=0)
FAILED_GATE = {CheckPhase.FAILED, CheckPhase.ERROR, CheckPhase.INCONCLUSIVE}


@dataclass
class _Stop(Exception):
    """Why the ramp stopped before completing."""

    kind: str  # gate | traffic | abort | cancelled | error
    reason: str
    gate: CheckStatus | None = None


@workflow.defn(name="FlagRamp")
class FlagRampWorkflow:
    @workflow.init
    def __init__(self, inp: FlagRampInput) -> None:
        spec = inp.ramp.spec
        self._inp = inp
        self._ref = FlagRef(provider=spec.provider, flag=spec.flag, variant=spec.variant, control=spec.control)
        self._status = FlagRampStatus(
            name=inp.ramp.metadata.name,
            workflow_id=ramp_workflow_id(spec.provider.type, spec.flag),
            provider=spec.provider.type,
            flag=spec.flag,
            variant=spec.variant,
            control=spec.control,
            phase=Phase.STARTING,
            stage=0,
            stages=len(spec.stages),
        )
        self._stop: _Stop | None = None
        self._paused = False
        self._promote_now = False
        self._control_variant = spec.control or "off"

    # ---- the algorithm -------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: FlagRampInput) -> FlagRampStatus:
        spec = inp.ramp.spec
        self._status.started_at = workflow.now()
        completed = False
        try:
            initial: Allocation = await self._act("flags.read", self._ref, Allocation)
            self._status.initial_percent = self._status.percent = initial.percent
            self._control_variant = spec.control or initial.control or "off"
            self._status.control = self._control_variant
            self._log(f"{spec.flag} ({spec.provider.type}) serves {spec.variant} to {initial.percent:g}% "
                      f"({initial.detail})")
            self._status.phase = Phase.RAMPING
            index = 0
            while index < len(spec.stages):
                self._status.stage = index
                await self._hold_while_paused()
                if self._promote_now:
                    break
                self._raise_if_stopped()
                if await self._run_stage(index, spec.stages[index]):
                    index += 1
            self._status.stage = len(spec.stages)
            self._raise_if_stopped()
            if self._promote_now:
                self._log("promote requested: remaining stages skipped")
                await self._apply(100.0)
                self._finish(Phase.COMPLETED, "promoted on request: 100%")
            else:
                self._finish(Phase.COMPLETED, f"all {len(spec.stages)} stages passed at "
                                              f"{spec.stages[-1].percent:g}%")
            completed = True
        except _Stop as stop:
            self._stop = stop
        except asyncio.CancelledError:
            self._stop = _Stop("cancelled", "the workflow was cancelled")
            raise
        except ActivityError as err:
            self._stop = _Stop("error", f"{err.activity_type or 'activity'} failed: {err.cause or err}")
        except Exception as err:
            self._stop = _Stop("error", f"unexpected failure: {err}")
        finally:
            if not completed:
                await self._revert()
        return self._status

    async def _run_stage(self, index: int, stage: Stage) -> bool:
        """Apply and hold one stage; True when it passed, False when it must run again (after a pause)."""
        spec = self._inp.ramp.spec
        record = StageRecord(index=index, percent=stage.percent)
        self._status.history.append(record)
        await self._apply(stage.percent)
        record.applied_at = workflow.now()
        self._log(f"stage {index + 1}/{len(spec.stages)}: {stage.percent:g}% for {stage.hold}")
        try:
            await self._hold(stage, record)
        except _Stop as stop:
            record.outcome = "not-enough-traffic" if stop.kind == "traffic" else (
                "aborted" if stop.kind in ("abort", "cancelled") else "failed")
            record.ended_at = workflow.now()
            if stop.kind in ("gate", "traffic") and spec.on_failure is OnFailure.PAUSE:
                return await self._pause_on_failure(stop)
            raise
        record.ended_at = workflow.now()
        record.outcome = "promoted" if self._promote_now else "passed"
        return True

    async def _hold(self, stage: Stage, record: StageRecord) -> None:
        """Watch the gates for the hold; extend while traffic is short; decide the checks at the end."""
        spec = self._inp.ramp.spec
        checks = list(spec.checks)
        start = workflow.now()
        end = start + stage.hold
        measurements: dict[str, list[Measurement]] = {c.name: [] for c in checks}
        due: dict[str, datetime] = {c.name: start + c.initial_delay for c in checks}
        verdicts: dict[str, CheckStatus] = {}
        self._status.gates = []
        base = await self._sample() if spec.minimum_sample else None

        def publish() -> None:
            record.gates = list(verdicts.values())
            self._status.gates = record.gates

        while True:
            running = [c for c in checks if c.name not in verdicts or not verdicts[c.name].phase.final]
            now = workflow.now()
            for check in running:
                if due[check.name] <= now:
                    measurements[check.name].append(await self._measure(check))
                    verdict = decide(check, measurements[check.name], finished=False)
                    verdicts[check.name] = verdict
                    publish()
                    due[check.name] = workflow.now() + check.interval
                    if verdict.phase in FAILED_GATE:
                        raise _Stop("gate", f"gate failed at {stage.percent:g}%: {verdict.reason}", verdict)
                self._raise_if_stopped()
                if self._promote_now:
                    return
            running = [c for c in checks if not verdicts.get(c.name) or not verdicts[c.name].phase.final]
            now = workflow.now()
            # The stage ends when its hold is over, it is not paused, and counted checks have decided.
            if now >= end and not self._paused and not any(c.count is not None for c in running):
                if spec.minimum_sample is not None:
                    ms = spec.minimum_sample
                    seen = self._increase(base, await self._sample())
                    record.sample = seen
                    if seen < ms.min:
                        if record.extensions >= ms.max_extensions:
                            raise _Stop(
                                "traffic",
                                f"not enough traffic at {stage.percent:g}%: {seen:g} of {ms.min} needed "
                                f"after {record.extensions} extension(s) of {ms.extend_by}",
                            )
                        record.extensions += 1
                        end = workflow.now() + ms.extend_by
                        self._log(f"not enough traffic yet ({seen:g} of {ms.min}): stage extended by "
                                  f"{ms.extend_by} ({record.extensions}/{ms.max_extensions})")
                        continue
                for check in running:
                    verdict = decide(check, measurements[check.name], finished=True)
                    verdicts[check.name] = verdict
                    publish()
                    if verdict.phase in FAILED_GATE:
                        raise _Stop("gate", f"gate failed at {stage.percent:g}%: {verdict.reason}", verdict)
                return
            wake = [due[c.name] for c in running]
            if now < end:
                wake.append(end)
            timeout = (min(wake) - now) if wake else None
            if timeout is not None and timeout <= timedelta(0):
                continue
            await self._wait(timeout)

    async def _wait(self, timeout: timedelta | None) -> None:
        """Sleep until ``timeout`` or a stop or promotion; with no timeout, until resumed."""
        idle = timeout is None  # nothing to measure: only a resume (or a stop) moves the stage on

        def wake() -> bool:
            return self._stop is not None or self._promote_now or (idle and not self._paused)

        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(wake, timeout=timeout)

    async def _pause_on_failure(self, stop: _Stop) -> bool:
        """onFailure: pause — keep the flag where it is and wait for a human."""
        self._paused = True
        self._status.paused = True
        self._status.phase = Phase.PAUSED
        self._status.reason = stop.reason
        self._status.decisive_gate = stop.gate
        self._log(f"paused on failure (onFailure: pause): {stop.reason}; resume to run the stage again, "
                  "promote or abort")
        await workflow.wait_condition(lambda: not self._paused or self._stop is not None or self._promote_now)
        self._raise_if_stopped()
        if self._status.phase == Phase.PAUSED:
            self._status.phase = Phase.RAMPING
        self._status.reason = None
        return self._promote_now  # promoted: the stage loop ends; resumed: run the stage again

    async def _revert(self) -> None:
        """Compensation: the flag back to 0 %, retried until it lands."""
        stop = self._stop or _Stop("error", "stopped before completing")
        self._status.phase = Phase.REVERTING
        self._status.reason = stop.reason
        self._status.decisive_gate = stop.gate
        self._status.not_enough_traffic = stop.kind == "traffic"
        self._log(f"reverting to 0%: {stop.reason}")
        try:
            await self._apply(0.0, retry=RETRY_FOREVER)
        except ActivityError as err:
            self._finish(Phase.FAILED, f"{stop.reason}; revert failed: {err.cause or err}")
            return
        if stop.kind in ("abort", "cancelled"):
            self._finish(Phase.ABORTED, stop.reason)
        else:
            self._finish(Phase.REVERTED, stop.reason)

    async def _apply(self, percent: float, retry: RetryPolicy = RETRY) -> None:
        change: Change = await self._act(
            "flags.set_percent", SetPercentRequest(ref=self._ref, percent=percent), Change, retry=retry)
        self._status.applied.append(percent)
        self._status.percent = percent
        self._log(f"{self._ref.variant} at {percent:g}%" + ("" if change.changed else " (already set)"))

    async def _measure(self, check: Check) -> Measurement:
        spec = self._inp.ramp.spec
        try:
            measurement: Measurement = await self._act(
                "flags.evaluate_check",
                FlagCheckRequest(check=check, variables=self._variables(), treatment=spec.variant,
                                 control=self._control()),
                Measurement,
                retry=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1)))
            return measurement
        except ActivityError as err:
            # The metric backend failed: an error measurement, which the check's limits turn into a verdict.
            return Measurement(check=check.name, phase=GatePhase.ERROR, query=check.query,
                               message=f"evaluation failed: {err.cause or err}", at=workflow.now())

    async def _sample(self) -> float | None:
        ms = self._inp.ramp.spec.minimum_sample
        assert ms is not None
        value: float | None = await self._act(
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

    def _control(self) -> str:
        return self._control_variant

    # ---- controls --------------------------------------------------------------------------

    @workflow.query
    def status(self) -> FlagRampStatus:
        return self._status

    @workflow.update
    def pause(self, req: ControlRequest) -> ControlResponse:
        self._paused = True
        self._status.paused = True
        self._status.phase = Phase.PAUSED
        self._log(f"paused{self._by(req)}")
        return ControlResponse(accepted=True, message="paused: the flag stays where it is, gates keep watching")

    @pause.validator
    def _validate_pause(self, req: ControlRequest) -> None:
        self._require_running()
        if self._paused:
            raise ValueError("already paused")

    @workflow.update
    def resume(self, req: ControlRequest) -> ControlResponse:
        self._paused = False
        self._status.paused = False
        self._status.phase = Phase.RAMPING
        self._log(f"resumed{self._by(req)}")
        return ControlResponse(accepted=True, message="resumed")

    @resume.validator
    def _validate_resume(self, req: ControlRequest) -> None:
        self._require_running()
        if not self._paused:
            raise ValueError("not paused")

    @workflow.update
    def promote(self, req: ControlRequest) -> ControlResponse:
        self._promote_now = True
        self._paused = False
        self._status.paused = False
        self._log(f"promotion requested{self._by(req)}")
        return ControlResponse(accepted=True, message="promoting: the flag goes to 100%")

    @promote.validator
    def _validate_promote(self, req: ControlRequest) -> None:
        self._require_running()

    @workflow.update
    def abort(self, req: ControlRequest) -> ControlResponse:
        reason = f"aborted{self._by(req)}" + (f": {req.reason}" if req.reason else "")
        if self._stop is None:
            self._stop = _Stop("abort", reason)
        self._log(reason)
        return ControlResponse(accepted=True, message="reverting to 0%")

    @abort.validator
    def _validate_abort(self, req: ControlRequest) -> None:
        self._require_running()

    # ---- helpers ---------------------------------------------------------------------------

    def _require_running(self) -> None:
        if self._status.phase in FINAL_PHASES or self._status.phase is Phase.REVERTING:
            raise ValueError(f"the ramp is {self._status.phase.value}")
        if self._stop is not None:
            raise ValueError("the ramp is stopping")

    @staticmethod
    def _by(req: ControlRequest) -> str:
        return f" by {req.by}" if req.by else ""

    def _raise_if_stopped(self) -> None:
        if self._stop is not None:
            raise self._stop

    async def _hold_while_paused(self) -> None:
        if self._paused:
            self._status.phase = Phase.PAUSED
            await workflow.wait_condition(lambda: not self._paused or self._stop is not None)
            if self._status.phase == Phase.PAUSED:
                self._status.phase = Phase.RAMPING

    async def _act(self, name: str, arg: Any, result: type[T] | None = None, *,
                   timeout: timedelta = timedelta(seconds=30), retry: RetryPolicy = RETRY) -> Any:
        return await workflow.execute_activity(
            name, arg, result_type=result, start_to_close_timeout=timeout, retry_policy=retry)

    def _finish(self, phase: Phase, reason: str) -> None:
        self._status.phase = phase
        self._status.reason = reason
        self._status.paused = False
        self._status.finished_at = workflow.now()
        self._log(f"{phase.value}: {reason}")

    def _log(self, message: str) -> None:
        self._status.events.append(Event(at=workflow.now(), message=message))
        workflow.logger.info(message)


__all__ = ["FlagRampWorkflow", "ramp_workflow_id"]
