"""One chaos experiment, as one durable workflow.

    plan (targets, fault, every safety rail) ─► steady state before: every check must hold, else refused
    ─► for each ledger entry: record it (state + marks on the object), then inject
    ─► during ``duration``: checks every interval (a breach beyond failureLimit stops early);
       a repeated pod kill plans (all rails and the per-workload ready-pod floor, again), records
       and injects a new round every interval — or records the round as skipped
    ─► then, on success, breach, abort, cancellation or failure: revert every recorded entry, each
       on its own, re-attempted until it lands (``rollback-stuck`` while one keeps failing)
    ─► after: checks every interval until all hold again, or ``recoverWithin`` passes
    ─► the run is saved for scoring

The ledger is appended *before* the ``record`` activity is scheduled, so even an entry whose
recording was interrupted is reverted (revert is a no-op on an object that was never marked).
Controls, waits, the measurement loop, continue-as-new and compensation are the engine's
(``workflows/engine.py``). A worker that dies mid-run is replaced by one that replays this
history and carries on to the revert.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.chaos import (
        WORKFLOW_TYPE,
        ChaosInput,
        ChaosPhase,
        ChaosState,
        ChaosStatus,
        PlanRequest,
        RunRecordRequest,
        StageMeasurements,
        memo_for,
        workflow_id,
    )
    from orchestrator.api.requests import EvaluateRequest
    from orchestrator.chaos.models import LedgerEntry, Plan
    from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement
    from orchestrator.gates.model import Phase as GatePhase
    from orchestrator.specs.chaos import PodKill
    from orchestrator.specs.checks import Check
    from workflows.engine import (
        RETRY,
        ContinueAsNew,
        Controls,
        Engine,
        Stop,
        UndoStep,
    )

# Every activity is a few API calls; a short timeout bounds how long a crashed worker's attempt
# holds up the retry on another worker (and so how long a fault outlives its worker).
ACTIVITY_TIMEOUT = timedelta(seconds=20)
# An injection heartbeats before every write; a missed heartbeat ends its attempt, and a cancellation
# reaches it within about this long (the worker throttles heartbeats to a share of it).
INJECT_HEARTBEAT = timedelta(seconds=5)
EVIDENCE_KEPT = 1000  # measurements per check and stage kept as scoring evidence
PHASE_BY_STOP = {"breach": ChaosPhase.BREACHED, "abort": ChaosPhase.ABORTED, "cancelled": ChaosPhase.ABORTED,
                 "refused": ChaosPhase.REFUSED, "unmeasured": ChaosPhase.FAILED}


@workflow.defn(name=WORKFLOW_TYPE)
class ChaosExperimentWorkflow(Controls):
    @workflow.init
    def __init__(self, inp: ChaosInput) -> None:
        spec = inp.experiment.spec
        self._inp = inp
        self._state = inp.state or ChaosState(
            status=ChaosStatus(name=inp.experiment.metadata.name, namespace=spec.target.namespace,
                               fault=spec.fault.type),
            stages={c.name: StageMeasurements(check=c.name) for c in spec.steady_state.checks})
        self._status = self._state.status
        self._injecting = 0  # injections in flight: a revert waits until each has stopped
        self.engine = Engine(kind="chaos", name=self._status.name, status=self._status,
                             controls=self._state.controls, supports=frozenset({"abort", "retry"}),
                             history_limit=inp.history_limit, stuck_phase=self._stuck_phase,
                             undo_says="reverting")

    @workflow.query
    def status(self) -> ChaosStatus:
        return self._status

    @workflow.run
    async def run(self, inp: ChaosInput) -> ChaosStatus:
        cancelled = False
        try:
            if await self.engine.run(self._walk, self._revert):
                self.engine.stage = "finishing"
                await self._revert(None)
        except ContinueAsNew:
            self._status.runs += 1
            await self.engine.hand_over(ChaosInput(experiment=inp.experiment, source=inp.source,
                                                   history_limit=inp.history_limit, state=self._state))
        except asyncio.CancelledError:
            # The engine's compensation is shielded from cancellation, but a cancellation can also land outside
            # it (the finishing revert waiting for a cancelled round to stop): whatever is not reverted yet is
            # reverted here, so the run never ends cancelled with a fault in. Reverted entries are skipped.
            cancelled = True
            await self._revert(self.engine.stop or Stop("cancelled", "the workflow was cancelled"))
        self.engine.stage = "done"
        if not cancelled and self._status.injected_at is not None:
            await self._recover()
        self._conclude()
        await self._save()
        if cancelled:
            raise asyncio.CancelledError()
        return self._status

    # ---- steps ------------------------------------------------------------------------------

    async def _walk(self) -> None:
        spec = self._inp.experiment.spec
        if self._status.injected_at is None:
            if not self._status.run:  # not on a new run that resumes before injection
                self._status.workflow_id = workflow.info().workflow_id
                self._status.run = f"{self._inp.experiment.metadata.name[:54]}-{workflow.uuid4().hex[:8]}"
                self._status.started_at = workflow.now()
            await self._prepare()
            await self._verify_before()
            if workflow.patched("chaos-replan-after-verify"):
                # The looks above took count x interval: the rails and floors are checked again now, and the
                # plan made now is the one injected.
                await self._prepare(again=True)
            self._status.phase = ChaosPhase.INJECTING
            assert self._state.plan is not None
            await self._apply(self._state.plan)
            self._status.injected_at = workflow.now()
            self._status.phase = ChaosPhase.RUNNING
            self.engine.log(f"fault active for {spec.duration}")
        else:
            self.engine.log("continued as a new run while the fault is active (history size)")
        if isinstance(spec.fault, PodKill) and spec.fault.interval is not None:
            self.engine.spawn(self._repeat(spec.fault.interval))
        # During the fault a check runs until the fault ends, not until its count: failureLimit is the tolerance.
        checks = [c.model_copy(update={"count": None}) for c in spec.steady_state.checks]
        await self.engine.measure(
            checks, self._state.during, self._evaluate("during"), started=self._status.injected_at,
            until=self._status.injected_at + spec.duration, data_since=lambda: self._status.injected_at,
            on_verdict=self._breach, publish=self._publish, end_on_promote=False, hold=True)
        self.engine.cancel_background()
        self.engine.log("fault duration over")

    async def _prepare(self, again: bool = False) -> None:
        self.engine.log("planning again right before injection: targets and every safety rail" if again
                        else "planning: resolving targets and checking the safety rails")
        plan: Plan = await self.engine.act("chaos.plan", self._plan_request(0), Plan, timeout=ACTIVITY_TIMEOUT)
        before = list(self._status.plan)
        self._state.plan = plan
        self._status.plan = list(plan.lines)
        self._status.candidates = [p.name for p in plan.targets.candidates]
        self._status.budget_before = plan.budget
        if again and plan.lines == before:
            self.engine.log("plan: unchanged")
        else:
            for line in plan.lines:
                self.engine.log(f"plan: {line}")
        refusal = plan.refusal()
        if refusal is not None:
            raise Stop("refused", refusal)

    async def _verify_before(self) -> None:
        self._status.phase = ChaosPhase.VERIFYING
        # Measured ``count`` times (once without a count) at the check's interval; the verdict at the end.
        checks = [c.model_copy(update={"count": c.count or 1}) for c in self._inp.experiment.spec.steady_state.checks]
        await self.engine.measure(checks, self._state.before, self._evaluate("before"),
                                  started=workflow.now(), until=None, data_since=lambda: self._status.started_at,
                                  on_verdict=self._unsteady, publish=self._publish, end_on_promote=False)
        self.engine.log("steady state holds")

    async def _apply(self, plan: Plan) -> None:
        cancelled = False
        for entry in plan.entries:
            self.engine.raise_if_stopped()
            # Into the workflow's ledger first: whatever happens next, the revert covers it.
            self._status.ledger.append(entry)
            recorded: LedgerEntry = await self.engine.act("chaos.record", entry, LedgerEntry, timeout=ACTIVITY_TIMEOUT)
            self._status.ledger[-1] = recorded
            self.engine.log(f"recorded {recorded.object} in the ledger")
            done, cancelled = await self._inject(recorded)
            self.engine.log(done)
            if cancelled:
                break
        self._status.touched += [p.name for p in plan.targets.chosen]
        self._status.rounds += 1
        if cancelled:
            # Cancelled while the injection finished anyway: the SDK then hands back the activity's result and
            # the cancellation would be lost (the run, or a cancelled round, would carry on). The round that
            # landed is counted, then the cancellation is raised.
            raise asyncio.CancelledError()

    async def _inject(self, entry: LedgerEntry) -> tuple[str, bool]:
        """One injection, and whether the run (or round) was cancelled meanwhile.

        A cancellation waits until the injection has stopped, so no write of it follows the revert.
        """
        # A drain waits on PodDisruptionBudgets for up to its eviction timeout.
        extra = timedelta(seconds=float(entry.action.get("evictionTimeoutSeconds", 0)))
        self._injecting += 1
        try:
            done: str = await workflow.execute_activity(
                "chaos.inject", entry, result_type=str, start_to_close_timeout=ACTIVITY_TIMEOUT + extra,
                heartbeat_timeout=INJECT_HEARTBEAT, retry_policy=RETRY,
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED)
        finally:
            self._injecting -= 1
        task = asyncio.current_task()
        return done, task is not None and task.cancelling() > 0

    async def _repeat(self, interval: timedelta) -> None:
        """A repeated fault: every round re-plans with every rail and floor, then injects or skips."""
        spec = self._inp.experiment.spec
        assert self._status.injected_at is not None
        end = self._status.injected_at + spec.duration
        while True:
            self._state.next_round_at = self._state.next_round_at or workflow.now() + interval
            if self._state.next_round_at >= end:
                return
            await self.engine.wait(self._state.next_round_at, wake_on_promote=False)
            self._state.next_round_at = None
            round_ = self._status.rounds + len(self._status.skipped_rounds)
            plan: Plan = await self.engine.act("chaos.plan", self._plan_request(round_), Plan,
                                               timeout=ACTIVITY_TIMEOUT)
            if plan.skipped:
                self._status.skipped_rounds.append(plan.skipped)
                self.engine.log(f"round {round_ + 1} skipped: {plan.skipped}")
                continue
            await self._apply(plan)

    async def _unsteady(self, check: Check, status: CheckStatus) -> CheckStatus:
        raise Stop("refused", f"steady state does not hold before injection: {status.reason}", status)

    async def _breach(self, check: Check, status: CheckStatus) -> CheckStatus:
        if status.phase is CheckPhase.FAILED:
            raise Stop("breach", f"steady state breached during the fault: {status.reason}", status)
        # Unseen is unsafe, so the fault ends all the same; but an outage of the measurement (Prometheus, or
        # a worker away for longer than the error limit) says nothing about the system's resilience: the run
        # ends failed, which is recorded and not scored, rather than breached, which would dock the score.
        raise Stop("unmeasured", f"the steady state could not be measured during the fault: {status.reason}; "
                                 "the fault is reverted and the run is not scored", status)

    async def _revert(self, stop: Stop | None) -> None:
        """Every recorded fault is reverted; one failing revert never keeps the others in place."""
        if self._injecting:
            # A round cancelled in the background is still stopping: its writes must all come before the revert.
            await workflow.wait_condition(lambda: self._injecting == 0)
        steps: list[UndoStep] = []
        for entry in reversed(self._status.ledger):
            # Rounds of a repeated kill share their object; one revert per object is enough.
            key = str(entry.object)
            if key in self._status.reverted or any(s.name == key for s in steps):
                continue
            steps.append(UndoStep(key, lambda entry=entry, key=key: self._revert_one(entry, key)))  # type: ignore[misc]
        if not steps:
            return
        self._status.phase = ChaosPhase.REVERTING
        self.engine.log("reverting every recorded fault")
        await self.engine.compensate(steps)
        self._status.reverted_at = workflow.now()

    async def _revert_one(self, entry: LedgerEntry, key: str) -> None:
        done: str = await self.engine.act("chaos.revert", entry, str, timeout=ACTIVITY_TIMEOUT)
        self._status.reverted.append(key)
        self.engine.log(done)

    async def _recover(self) -> None:
        """After the revert: every check must hold again, in one look, within recoverWithin."""
        spec = self._inp.experiment.spec
        self._status.phase = ChaosPhase.RECOVERING
        deadline = workflow.now() + spec.steady_state.recover_within
        checks = spec.steady_state.checks
        interval = min(c.interval for c in checks)
        evaluate = self._evaluate("after")
        while True:
            # The engine's look: an activity that fails is one error measurement, a cancellation is raised.
            results = await asyncio.gather(*(self.engine._look(c, evaluate) for c in checks))
            if all(m.phase is GatePhase.SUCCESSFUL for m in results):
                self._status.recovered = True
                self._status.recovered_at = workflow.now()
                self.engine.log("steady state recovered")
                return
            if workflow.now() + interval > deadline:
                self._status.recovered = False
                bad = next(m for m in results if m.phase is not GatePhase.SUCCESSFUL)
                self.engine.log(f"steady state did not recover within {spec.steady_state.recover_within}: "
                                f"{bad.message}")
                return
            await workflow.sleep(interval)

    def _conclude(self) -> None:
        stop = self.engine.stop
        if stop is None:
            phase = ChaosPhase.COMPLETED if self._status.recovered else ChaosPhase.NOT_RECOVERED
            reason = "the steady state held and recovered" if self._status.recovered else (
                "the fault was reverted but the steady state did not recover in time")
        else:
            phase = PHASE_BY_STOP.get(stop.kind, ChaosPhase.FAILED)
            reason = stop.reason
            if phase is ChaosPhase.BREACHED and self._status.recovered is False:
                reason += "; and it did not recover after the revert"
            self._status.reason_kind = stop.kind
        self._status.phase = phase
        self._status.reason = reason
        self._status.finished_at = workflow.now()
        self.engine.log(f"{phase.value}: {reason}")

    async def _save(self) -> None:
        # The score store is evidence, not control: a failure to save never changes the outcome.
        try:
            await self.engine.act("chaos.save_run", RunRecordRequest(
                experiment=self._inp.experiment, status=self._status,
                measurements=list(self._state.stages.values()), plan=self._state.plan), str,
                timeout=timedelta(seconds=60), retry=RetryPolicy(maximum_attempts=3))
            self._status.recorded = True
        except ActivityError as err:  # evidence only
            self.engine.log(f"the run could not be saved for scoring: {err}")

    # ---- helpers ------------------------------------------------------------------------------

    def _plan_request(self, round_: int) -> PlanRequest:
        # Every round runs every rail again, right before its injection.
        return PlanRequest(experiment=self._inp.experiment, run=self._status.run,
                           workflow_id=self._status.workflow_id, round=round_, now=workflow.now(), rails=True)

    def _evaluate(self, stage: str) -> Any:
        variables = {"namespace": self._status.namespace, "app": self._inp.experiment.spec.target.app,
                     "target": self._status.name}
        evaluate = self.engine.evaluator("chaos.evaluate_check",
                                         lambda check: EvaluateRequest(check=check, variables=variables))

        async def recorded(check: Check) -> Measurement:
            m: Measurement = await evaluate(check)
            evidence = getattr(self._state.stages.setdefault(check.name, StageMeasurements(check=check.name)), stage)
            evidence.append(m)
            del evidence[:-EVIDENCE_KEPT]
            if stage == "during" and m.phase is not GatePhase.SUCCESSFUL and self._status.first_breach_at is None:
                self._status.first_breach_at = m.at
            return m

        return recorded

    def _publish(self) -> None:
        self._status.checks = list({**self._state.before, **self._state.during}.values())

    def _stuck_phase(self, stuck: bool) -> None:
        self._status.phase = ChaosPhase.REVERT_STUCK if stuck else ChaosPhase.REVERTING


__all__ = ["ChaosExperimentWorkflow", "memo_for", "workflow_id"]
