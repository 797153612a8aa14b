"""One chaos experiment, as one durable workflow.

    plan (targets, fault, safety rails) ─► steady state before: every check must hold, else refused
    ─► for each ledger entry: record it (state + marks on the object), then inject
    ─► during ``duration``: checks every interval (a breach beyond failureLimit stops early);
       a repeated pod kill plans, records and injects a new round every interval
    ─► finally, on success, breach, abort, cancellation or failure: revert every recorded entry
    ─► after: checks every interval until all hold again, or ``recoverWithin`` passes
    ─► the run is saved for scoring

The ledger is appended *before* the ``record`` activity is scheduled, so even an entry whose
recording was interrupted is reverted (revert is a no-op on an object that was never marked).
Revert activities retry forever: a fault must not outlive its experiment. A worker that dies
mid-run is replaced by one that replays this history and carries on to the revert.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from orchestrator.activities.models import EvaluateRequest
    from orchestrator.chaos.models import LedgerEntry, Plan
    from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement
    from orchestrator.gates.model import Phase as GatePhase
    from orchestrator.gates.verdict import decide
    from orchestrator.specs.chaos import PodKill
    from orchestrator.specs.checks import Check
    from workflows.chaos_models import (
        FINAL_PHASES,
        WORKFLOW_TYPE,
        ChaosInput,
        ChaosPhase,
        ChaosStatus,
        ControlRequest,
        ControlResponse,
        Event,
        PlanRequest,
        RunRecordRequest,
        StageMeasurements,
    )

T = TypeVar("T")

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10), maximum_attempts=5)
RETRY_FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=30), maximum_attempts=0)
# Every activity is a few API calls; a short timeout bounds how long a crashed worker's attempt
# holds up the retry on another worker (and so how long a fault outlives its worker).
ACTIVITY_TIMEOUT = timedelta(seconds=20)
BREACH = {CheckPhase.FAILED, CheckPhase.ERROR, CheckPhase.INCONCLUSIVE}


@dataclass
class _Stop(Exception):
    kind: str  # breach | abort | cancelled | error | refused
    reason: str


@workflow.defn(name=WORKFLOW_TYPE)
class ChaosExperimentWorkflow:
    @workflow.init
    def __init__(self, inp: ChaosInput) -> None:
        spec = inp.experiment.spec
        self._inp = inp
        self._status = ChaosStatus(
            name=inp.experiment.metadata.name, namespace=spec.target.namespace, fault=spec.fault.type)
        self._stop: _Stop | None = None
        self._stages: dict[str, StageMeasurements] = {
            c.name: StageMeasurements(check=c.name) for c in spec.steady_state.checks}
        self._gates: dict[str, CheckStatus] = {}
        self._plan: Plan | None = None

    @workflow.run
    async def run(self, inp: ChaosInput) -> ChaosStatus:
        exp = inp.experiment
        info = workflow.info()
        self._status.workflow_id = info.workflow_id
        self._status.run = f"{exp.metadata.name[:54]}-{workflow.uuid4().hex[:8]}"
        self._status.started_at = workflow.now()
        cancelled = False
        try:
            await self._prepare()
            await self._verify_before()
            if self._stop is not None:
                raise self._stop
            self._status.phase = ChaosPhase.INJECTING
            assert self._plan is not None
            await self._apply(self._plan)
            self._status.injected_at = workflow.now()
            self._status.phase = ChaosPhase.RUNNING
            self._log(f"fault active for {exp.spec.duration}")
            await self._during()
        except _Stop as stop:
            self._stop = self._stop or stop
        except asyncio.CancelledError:
            self._stop = _Stop("cancelled", "the workflow was cancelled")
            cancelled = True
            raise
        except ActivityError as err:
            self._stop = self._stop or self._activity_stop(err)
        except Exception as err:
            self._stop = self._stop or _Stop("error", f"unexpected failure: {err}")
        finally:
            await self._revert()
            if not cancelled and self._status.injected_at is not None:
                await self._recover()
            self._conclude()
            await self._save()
        return self._status

    # ---- steps ------------------------------------------------------------------------------

    async def _prepare(self) -> None:
        self._log("planning: resolving targets and checking the safety rails")
        self._plan = await self._act("chaos.plan", self._plan_request(0, rails=True), Plan)
        self._status.plan = list(self._plan.lines)
        self._status.candidates = [p.name for p in self._plan.targets.candidates]
        self._status.budget_before = self._plan.budget
        for line in self._plan.lines:
            self._log(f"plan: {line}")

    async def _verify_before(self) -> None:
        self._status.phase = ChaosPhase.VERIFYING
        checks = self._inp.experiment.spec.steady_state.checks
        results = await asyncio.gather(*(self._hold(c) for c in checks))
        failed = [s for s in results if s.phase is not CheckPhase.SUCCESSFUL]
        if failed:
            raise _Stop("refused", f"steady state does not hold before injection: {failed[0].reason}")
        self._log("steady state holds")

    async def _hold(self, check: Check) -> CheckStatus:
        """Measure ``count`` times (once without a count) at the check's interval; the verdict at the end."""
        wanted = check.count or 1
        measurements: list[Measurement] = []
        for index in range(wanted):
            if index:
                await workflow.sleep(check.interval)
            m = await self._measure(check)
            measurements.append(m)
            self._stages[check.name].before.append(m)
            status = decide(check, measurements, finished=index == wanted - 1)
            self._gates[check.name] = status
            self._status.checks = list(self._gates.values())
            if status.phase.final:
                return status
        return decide(check, measurements, finished=True)

    async def _apply(self, plan: Plan) -> None:
        for entry in plan.entries:
            if self._stop is not None:
                raise self._stop
            # Into the workflow's ledger first: whatever happens next, finally reverts it.
            self._status.ledger.append(entry)
            recorded = await self._act("chaos.record", entry, LedgerEntry)
            self._status.ledger[-1] = recorded
            self._log(f"recorded {recorded.object} in the ledger")
            # A drain waits on PodDisruptionBudgets for up to its eviction timeout.
            extra = timedelta(seconds=float(recorded.action.get("evictionTimeoutSeconds", 0)))
            done = await self._act("chaos.inject", recorded, str, timeout=ACTIVITY_TIMEOUT + extra)
            self._log(done)
        self._status.touched += [p.name for p in plan.targets.chosen]
        self._status.rounds += 1

    async def _during(self) -> None:
        spec = self._inp.experiment.spec
        started = workflow.now()
        tasks = [asyncio.create_task(self._watch(c, started)) for c in spec.steady_state.checks]
        if isinstance(spec.fault, PodKill) and spec.fault.interval is not None:
            tasks.append(asyncio.create_task(self._repeat(spec.fault.interval, started)))
        try:
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(lambda: self._stop is not None, timeout=spec.duration)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._stop is not None:
            raise self._stop
        self._log("fault duration over")

    async def _watch(self, check: Check, started: Any) -> None:
        spec = self._inp.experiment.spec
        # During the fault a check runs until the fault ends, not until its count: drop the count so
        # decide() keeps judging every measurement instead of settling after the first ``count``.
        check = check.model_copy(update={"count": None})
        measurements: list[Measurement] = []
        while self._stop is None and workflow.now() - started < spec.duration:
            m = await self._measure(check)
            measurements.append(m)
            self._stages[check.name].during.append(m)
            if m.phase is not GatePhase.SUCCESSFUL and self._status.first_breach_at is None:
                self._status.first_breach_at = m.at
            # Tolerance is the check's failureLimit: decide() fails only beyond it.
            status = decide(check, measurements, finished=False)
            self._gates[check.name] = status
            self._status.checks = list(self._gates.values())
            if status.phase in BREACH and self._stop is None:
                self._stop = _Stop("breach", f"steady state breached during the fault: {status.reason}")
                self._log(self._stop.reason)
                return
            await self._sleep(check.interval)

    async def _repeat(self, interval: timedelta, started: Any) -> None:
        spec = self._inp.experiment.spec
        while self._stop is None:
            await self._sleep(interval)
            if self._stop is not None or workflow.now() - started >= spec.duration:
                return
            try:
                plan = await self._act("chaos.plan", self._plan_request(self._status.rounds, rails=False), Plan)
                await self._apply(plan)
            except ActivityError as err:
                if self._stop is None:
                    self._stop = self._activity_stop(err)
                return

    async def _revert(self) -> None:
        if not self._status.ledger:
            return
        self._status.phase = ChaosPhase.REVERTING
        self._log("reverting every recorded fault")
        for entry in reversed(self._status.ledger):
            # Rounds of a repeated kill share their object; one revert per object is enough.
            key = str(entry.object)
            if key in self._status.reverted:
                continue
            done = await self._act("chaos.revert", entry, str, retry=RETRY_FOREVER)
            self._status.reverted.append(key)
            self._log(done)
        self._status.reverted_at = workflow.now()

    async def _recover(self) -> None:
        """After the revert: every check must hold again within recoverWithin."""
        spec = self._inp.experiment.spec
        self._status.phase = ChaosPhase.RECOVERING
        deadline = workflow.now() + spec.steady_state.recover_within
        checks = spec.steady_state.checks
        interval = min(c.interval for c in checks)
        while True:
            results = await asyncio.gather(*(self._measure(c) for c in checks))
            for check, m in zip(checks, results, strict=True):
                self._stages[check.name].after.append(m)
            if all(m.phase is GatePhase.SUCCESSFUL for m in results):
                self._status.recovered = True
                self._status.recovered_at = workflow.now()
                self._log("steady state recovered")
                return
            if workflow.now() + interval > deadline:
                self._status.recovered = False
                bad = next(m for m in results if m.phase is not GatePhase.SUCCESSFUL)
                self._log(f"steady state did not recover within {spec.steady_state.recover_within}: {bad.message}")
                return
            await workflow.sleep(interval)

    def _conclude(self) -> None:
        stop = self._stop
        if stop is None:
            phase = ChaosPhase.COMPLETED if self._status.recovered else ChaosPhase.NOT_RECOVERED
            reason = "the steady state held and recovered" if self._status.recovered else (
                "the fault was reverted but the steady state did not recover in time")
        else:
            phase = {
                "breach": ChaosPhase.BREACHED, "abort": ChaosPhase.ABORTED, "cancelled": ChaosPhase.ABORTED,
                "refused": ChaosPhase.REFUSED,
            }.get(stop.kind, ChaosPhase.FAILED)
            reason = stop.reason
            if phase is ChaosPhase.BREACHED and self._status.recovered is False:
                reason += "; and it did not recover after the revert"
        self._status.phase = phase
        self._status.reason = reason
        self._status.finished_at = workflow.now()
        self._log(f"{phase.value}: {reason}")

    async def _save(self) -> None:
        # The score store is evidence, not control: a failure to save never changes the outcome.
        try:
            await self._act("chaos.save_run", RunRecordRequest(
                experiment=self._inp.experiment, status=self._status,
                measurements=list(self._stages.values()), plan=self._plan), str)
            self._status.recorded = True
        except ActivityError as err:
            self._log(f"the run could not be saved for scoring: {err.cause or err}")

    # ---- controls -----------------------------------------------------------------------------

    @workflow.query
    def status(self) -> ChaosStatus:
        return self._status

    @workflow.update
    def abort(self, req: ControlRequest) -> ControlResponse:
        reason = "aborted" + (f" by {req.by}" if req.by else "") + (f": {req.reason}" if req.reason else "")
        if self._stop is None:
            self._stop = _Stop("abort", reason)
        self._log(reason)
        return ControlResponse(accepted=True, message="reverting")

    @abort.validator
    def _validate_abort(self, req: ControlRequest) -> None:
        if self._status.phase in FINAL_PHASES:
            raise ValueError(f"the experiment is {self._status.phase.value}")
        if self._stop is not None:
            raise ValueError("the experiment is already stopping")

    # ---- helpers ------------------------------------------------------------------------------

    def _plan_request(self, round_: int, rails: bool) -> PlanRequest:
        return PlanRequest(experiment=self._inp.experiment, run=self._status.run,
                           workflow_id=self._status.workflow_id, round=round_, now=workflow.now(), rails=rails)

    def _activity_stop(self, err: ActivityError) -> _Stop:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == "RefusedError":
            return _Stop("refused", cause.message)
        return _Stop("error", f"{err.activity_type or 'activity'} failed: {cause or err}")

    async def _measure(self, check: Check) -> Measurement:
        variables = {"namespace": self._status.namespace, "app": self._inp.experiment.spec.target.app,
                     "target": self._status.name}
        try:
            result: Measurement = await self._act(
                "chaos.evaluate_check", EvaluateRequest(check=check, variables=variables), Measurement,
                timeout=timedelta(seconds=15), retry=RetryPolicy(maximum_attempts=3))
            return result
        except ActivityError as err:
            return Measurement(check=check.name, phase=GatePhase.ERROR, query=check.query,
                               message=f"evaluation failed: {err.cause or err}", at=workflow.now())

    async def _sleep(self, duration: timedelta) -> None:
        """Sleep, waking early when the experiment stops."""
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._stop is not None, timeout=duration)

    async def _act(self, name: str, arg: Any, result: type[T] | None = None, *,
                   timeout: timedelta = ACTIVITY_TIMEOUT, retry: RetryPolicy = RETRY) -> Any:
        return await workflow.execute_activity(
            name, arg, result_type=result, start_to_close_timeout=timeout, retry_policy=retry)

    def _log(self, message: str) -> None:
        self._status.events.append(Event(at=workflow.now(), message=message))
        workflow.logger.info(message)


def workflow_id(namespace: str, name: str) -> str:
    """One run of an experiment at a time: the workflow id is derived from its target namespace and name."""
    return f"chaos-{namespace}-{name}"


def memo_for(inp: ChaosInput) -> dict[str, Any]:
    """What the rails of other experiments read to find overlapping targets."""
    target = inp.experiment.spec.target
    return {"namespace": target.namespace, "selector": dict(target.selector),
            "experiment": inp.experiment.metadata.name}


__all__ = ["ChaosExperimentWorkflow", "memo_for", "workflow_id"]
