"""The canary rollout, as one durable workflow.

    snapshot stable ─► create canary (and baseline) ─► for each step:
        setWeight  → shift traffic, wait until the canary serves it (effective weight reported)
        pause      → hold for a duration, or until approved (timeout → rollback)
        analysis   → look at every check once per interval until each one decides (one ``watch``
                     activity per step, ``workflows/core_watch.py``: history grows with steps, not looks)
    background checks run through all steps; a failing gate, ``abort``, a cancellation or an
    unexpected error stops the walk; a gate that cannot decide follows ``onInconclusive``
    (pause with a timeout, or rollback) ─► rollback, each step on its own, never stuck silently:
        traffic to stable (stable full and ready first) ─► restore stable if promotion had begun
        ─► remove canary and baseline (only once the stable serves)
    otherwise, once nothing is paused and every background check passed at the last weight
    (``workflows/decide.py``) ─► promote: stable gets the new template and becomes available,
        then takes all traffic back, then the canary is removed — capacity is never removed
        before its replacement is ready.

Controls, waits, the measurement loop, continue-as-new and compensation are the engine's
(``workflows/engine.py``); this file holds the algorithm and its state. Every side effect is an
idempotent activity, so a worker that dies mid-step is replaced by one that replays history and
carries on without applying any step twice.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.canary import (
        WORKFLOW_TYPE,
        CanaryInput,
        CanaryState,
        CanaryStatus,
        Phase,
        workflow_id,
    )
    from orchestrator.api.requests import (
        CopyRequest,
        DeploymentRef,
        EvaluateRequest,
        NotifyRequest,
        RouteRequest,
        ScaleRequest,
        StableSnapshot,
        TemplateRestore,
        TemplateUpdate,
        WaitRequest,
        WeightResult,
    )
    from orchestrator.gates.model import CheckPhase, CheckStatus
    from orchestrator.gates.verdict import start
    from orchestrator.rails.models import RailsRequest
    from orchestrator.specs.canary import (
        AnalysisStep,
        CanaryReplicas,
        PauseStep,
        ReplicasRouting,
        SetWeightStep,
    )
    from orchestrator.specs.checks import Check
    from orchestrator.specs.promql import image_version
    from workflows import decide as core
    from workflows.core_watch import watch
    from workflows.engine import ContinueAsNew, Controls, Engine, Judges, MeasureAgain, Stop, UndoStep

_ONCE = RetryPolicy(maximum_attempts=1)
WATCHED = "looks-in-one-watch"  # runs begun before it took each look as an activity of its own
FINAL_BY_STOP = {"abort": Phase.ABORTED, "cancelled": Phase.ABORTED, "refused": Phase.REFUSED}


@workflow.defn(name=WORKFLOW_TYPE)
class CanaryWorkflow(Controls):
    @workflow.init
    def __init__(self, inp: CanaryInput) -> None:
        spec = inp.rollout.spec
        self._inp = inp
        self._image = inp.image or spec.change.image or ""
        self._state = inp.state or CanaryState(status=CanaryStatus(
            name=inp.rollout.metadata.name, namespace=spec.target.namespace, deployment=spec.target.deployment,
            image=self._image, phase=Phase.STARTING, step=0, steps=len(spec.steps)))
        self._status = self._state.status
        self._fresh_step = True
        self.engine = Engine(kind="canary", name=self._status.name, status=self._status,
                             controls=self._state.controls, supports=frozenset(Controls.CONTROLS),
                             history_limit=inp.history_limit, stuck_phase=self._stuck_phase,
                             show_paused=self._show_paused, undo_says="rolling back")
        self._judges = Judges(self.engine, self._state.judges, spec.all_checks(), self._variables,
                              step_since=lambda: self._state.controls.weight_changed_at)

    @workflow.query
    def status(self) -> CanaryStatus:
        return self._status

    @workflow.run
    async def run(self, inp: CanaryInput) -> CanaryStatus:
        try:
            await self.engine.run(self._walk, self._rollback)
        except ContinueAsNew:
            self._status.runs += 1
            await self.engine.hand_over(CanaryInput(rollout=inp.rollout, image=self._image,
                                                    history_limit=inp.history_limit, watch_seconds=inp.watch_seconds,
                                                    state=self._state))
        except asyncio.CancelledError:
            # Rolled back to the end already (the engine shields compensation): say so, then end cancelled.
            self.engine.stage = "done"
            await self._notify()
            raise
        self.engine.stage = "done"
        await self._notify()
        return self._status

    # ---- the algorithm -------------------------------------------------------------------

    async def _walk(self) -> None:
        spec = self._inp.rollout.spec
        state = self._state
        if state.snapshot is None:
            self._status.started_at = workflow.now()
            self._status.preflight = await self.engine.preflight(RailsRequest(
                kind="canary", spec=self._inp.rollout, workflow_id=workflow.info().workflow_id, at=workflow.now()))
            state.snapshot = await self.engine.act("canary.snapshot_stable", DeploymentRef(
                namespace=spec.target.namespace, name=spec.target.deployment, container=spec.target.container),
                StableSnapshot)
            self._status.image = self._image = self._image or state.snapshot.image
            await self._create_copies()
            self._status.phase = Phase.PROGRESSING
        else:
            self.engine.log(f"continued as a new run at step {self._status.step + 1} (history size)")
        if spec.background_checks:
            self.engine.spawn(self._background())
        for index in range(self._status.step, len(spec.steps)):
            if index != self._status.step:
                state.step_started_at = None
            self._status.step = index
            if state.step_started_at is None:  # a step already under way goes on while paused
                if self.engine.should_continue():
                    raise ContinueAsNew()
                await self.engine.hold_while_paused()
            if state.controls.promote:
                self.engine.log("promote requested: remaining steps skipped")
                break
            self.engine.raise_if_stopped()
            self._fresh_step = state.step_started_at is None  # False: a new run resumes this step
            began = state.step_started_at = state.step_started_at or workflow.now()
            step = spec.steps[index]
            await self._run_step(step)
            self.engine.step_done()
            kind = next(iter(step.model_dump(by_alias=True)))
            state.step_seconds.append((kind, (workflow.now() - began).total_seconds()))
            state.decided.update(state.checks)
            state.checks = {}
            self.engine.raise_if_stopped()
        state.step_started_at = None
        self._status.step = len(spec.steps)
        self.engine.raise_if_stopped()
        if workflow.patched("promote-only-on-a-decision"):
            # The background checks watch on while the promotion waits for their verdicts at the last weight.
            await self.engine.until_promotable()
        self.engine.cancel_background()
        await self._promote()

    async def _create_copies(self) -> None:
        assert self._state.snapshot is not None
        spec = self._inp.rollout.spec
        replicas_mode = isinstance(spec.traffic, ReplicasRouting)
        # With no mesh the canary starts empty and setWeight scales it; with a router it is
        # sized up front and receives traffic only through route weights.
        size = spec.canary_replicas or (0 if replicas_mode else self._state.snapshot.replicas)
        self.engine.log(f"creating {self._canary_name} ({size} replicas) with image {self._image}")
        await self.engine.act("canary.ensure_copy", CopyRequest(
            snapshot=self._state.snapshot, name=self._canary_name, role="canary", rollout=self._status.name,
            replicas=size, image=self._image, env=spec.change.env))
        if spec.baseline:
            await self.engine.act("canary.ensure_copy", CopyRequest(
                snapshot=self._state.snapshot, name=self._baseline_name, role="baseline",
                rollout=self._status.name, replicas=max(size, 1)))
        if size:
            await self._wait_available(self._canary_name)
        if spec.baseline:
            await self._wait_available(self._baseline_name)

    async def _run_step(self, step: Any) -> None:
        if isinstance(step, SetWeightStep):
            await self._set_weight(step.set_weight)
        elif isinstance(step, PauseStep):
            await self._pause(step)
        elif isinstance(step, AnalysisStep):
            self._status.step_description = "analysis: " + ", ".join(c.name for c in step.analysis.checks)
            self._log_step()
            while True:
                began = self._state.step_started_at
                assert began is not None
                until = None if step.analysis.duration is None else self.engine.step_timer(
                    began + step.analysis.duration)
                try:
                    if workflow.patched(WATCHED):
                        await self._watch(step.analysis.checks, self._state.checks, started=began, until=until)
                    else:
                        await self.engine.measure(
                            step.analysis.checks, self._state.checks, self._evaluate, started=began, until=until,
                            data_since=lambda: self._status.canary_traffic_at, on_verdict=self._on_verdict,
                            publish=self._publish, conclude=self._judges.conclude)
                    return
                except MeasureAgain:
                    # Resumed after a pause for an undecided gate: the analysis runs again, from its start.
                    self.engine.step_done()
                    self._state.step_started_at = workflow.now()
                    self._state.checks = {}

    async def _set_weight(self, wanted: int | CanaryReplicas) -> None:
        if isinstance(wanted, CanaryReplicas):
            assert self._state.snapshot is not None
            pods = wanted.replicas
            weight = round(100 * pods / max(self._state.snapshot.replicas, 1))
            self._status.step_description = f"setWeight {pods} canary pod(s)"
            self.engine.log(f"shifting traffic to {pods} canary pod(s) (about {weight}%)")
        else:
            pods, weight = None, wanted
            self._status.step_description = f"setWeight {weight}"
            self.engine.log(f"shifting {weight}% of traffic to the canary")
        result = await self._route_call("canary.set_weight", weight, replicas=pods)
        self.engine.weight_changed()
        if weight > 0 and self._status.canary_traffic_at is None:
            self._status.canary_traffic_at = workflow.now()
        if result.verified is False:
            raise Stop("error", f"the router did not confirm weight {weight} within the progress deadline"
                                + (f": {result.detail}" if result.detail else ""))

    async def _pause(self, step: PauseStep) -> None:
        pause = step.pause
        assert self._state.step_started_at is not None
        if pause.until_approved:
            assert pause.timeout is not None
            deadline = self.engine.step_timer(self._state.step_started_at + pause.timeout)
            self._status.phase = Phase.WAITING_APPROVAL
            self._status.waiting_for = f"manual approval (timeout {pause.timeout}, then {pause.on_timeout})"
            self._status.step_description = "waiting for approval"
            self.engine.waiting_approval = True
            self._log_step()
            try:
                expired = await self.engine.wait(deadline, also=lambda: self._state.controls.approved)
            finally:
                self.engine.waiting_approval = False
                self._status.waiting_for = None
                if self._status.phase == Phase.WAITING_APPROVAL:
                    self._status.phase = Phase.PROGRESSING
            if self._state.controls.approved:
                self._state.controls.approved = False
                self.engine.log("approved")
            elif expired and not self._state.controls.promote:
                if pause.on_timeout == "rollback":
                    raise Stop("approval-timeout", f"nobody approved within {pause.timeout}")
                self.engine.log("approval timed out; onTimeout says promote")
        else:
            assert pause.duration is not None
            self._status.step_description = f"pause {pause.duration}"
            self._log_step()
            await self.engine.wait(self.engine.step_timer(self._state.step_started_at + pause.duration))

    async def _background(self) -> None:
        started = self._status.started_at or workflow.now()
        checks = self._inp.rollout.spec.background_checks
        for check in checks:  # watched from the start: a check not measured yet holds the promotion
            if check.name not in self._state.controls.verdicts:
                self.engine.apply(core.Looked(check.name, core.Verdict.UNMEASURED))
        if workflow.patched(WATCHED):
            await self._watch(checks, self._state.background, started=started, until=None, background=True)
            return
        await self.engine.measure(
            checks, self._state.background, self._evaluate, started=started,
            until=None, data_since=lambda: self._status.canary_traffic_at, on_verdict=self._on_verdict,
            publish=self._publish, end_on_promote=False, watch=True)

    async def _watch(self, checks: list[Check], states: dict[str, CheckStatus], *, started: datetime,
                     until: datetime | None, background: bool = False) -> None:
        """The looks of a timed step (or of the background checks) in watch activities."""
        await watch(self.engine, checks, states, judges=self._state.judges,
                    rollout_checks=self._inp.rollout.spec.all_checks(), variables=self._variables, started=started,
                    until=until, data_since=lambda: self._status.canary_traffic_at, on_verdict=self._on_verdict,
                    publish=self._publish, background=background, max_seconds=self._inp.watch_seconds)

    async def _on_verdict(self, check: Check, status: CheckStatus) -> CheckStatus:
        """A gate failed (rollback) or cannot decide (the rollout's onInconclusive)."""
        if status.phase is CheckPhase.FAILED:
            raise Stop("gate", status.reason, status)
        self._status.decisive_gate = status
        measure_again = await self.engine.no_decision(status, self._inp.rollout.spec.on_inconclusive)
        self._status.decisive_gate = None
        if not measure_again:
            return status  # promoted
        if check.name in self._state.background:
            self.engine.log(f"measuring {check.name} again")
            return start(check)
        raise MeasureAgain()

    async def _promote(self) -> None:
        snapshot = self._state.snapshot
        assert snapshot is not None
        spec = self._inp.rollout.spec
        self.engine.stage = "finishing"
        self._status.phase = Phase.PROMOTING
        self.engine.log(f"promoting {self._image} to {spec.target.deployment}")
        self._state.stable_modified = True
        self._status.previous_template = snapshot.template
        await self.engine.act("canary.update_stable", TemplateUpdate(
            namespace=spec.target.namespace, name=spec.target.deployment, container=snapshot.container,
            image=self._image, env=spec.change.env))
        # The stable serves the new version at full size before the canary gives up its share.
        await self._wait_available(spec.target.deployment)
        await self._route_call("canary.reset_traffic", 0)
        await self._remove_copies(keep=False)
        self._finish(Phase.PROMOTED, "promoted on request" if self._state.controls.promote else "all steps passed")

    async def _rollback(self, stop: Stop) -> None:
        """Compensation: traffic back to stable first (the fast, decisive part), then clean up."""
        spec = self._inp.rollout.spec
        self._status.phase = Phase.ROLLING_BACK
        self._status.reason = stop.reason
        self._status.reason_kind = stop.kind
        self._status.decisive_gate = stop.gate or self._status.decisive_gate
        self._status.rollback_started_at = workflow.now()
        self._status.paused = False
        self.engine.log(f"rolling back: {stop.reason}")
        steps: list[UndoStep] = []
        if self._state.snapshot is not None:
            steps.append(UndoStep("traffic to stable", self._traffic_to_stable))
            serving: tuple[str, ...] = ("traffic to stable",)
            if self._state.stable_modified and spec.rollback.restore_stable:
                steps.append(UndoStep("restore the stable template", self._restore_stable))
                serving += ("restore the stable template",)
            steps.append(UndoStep("remove the canary", lambda: self._remove_copies(spec.rollback.keep_canary),
                                  after=serving))
        await self.engine.compensate(steps)
        # A rollout that failed before it changed anything has nothing rolled back.
        untouched = Phase.FAILED if self._state.snapshot is None else Phase.ROLLED_BACK
        self._finish(FINAL_BY_STOP.get(stop.kind, untouched), stop.reason)

    async def _traffic_to_stable(self) -> None:
        await self._route_call("canary.reset_traffic", 0)
        self._status.weight_zero_at = self._status.weight_zero_at or workflow.now()

    async def _restore_stable(self) -> None:
        spec = self._inp.rollout.spec
        assert self._state.snapshot is not None
        await self.engine.act("canary.restore_stable", TemplateRestore(
            namespace=spec.target.namespace, name=spec.target.deployment, template=self._state.snapshot.template))
        await self._wait_available(spec.target.deployment)

    async def _remove_copies(self, keep: bool) -> None:
        ns = self._status.namespace
        names = [self._canary_name] + ([self._baseline_name] if self._inp.rollout.spec.baseline else [])
        for name in names:
            if keep:
                await self.engine.act("canary.scale", ScaleRequest(namespace=ns, name=name, replicas=0))
            else:
                await self.engine.act("canary.delete_copy", DeploymentRef(namespace=ns, name=name))

    async def _notify(self) -> None:
        await self.engine.notify(NotifyRequest(
            kind="canary", name=self._status.name, outcome=self._status.phase.value,
            target=f"{self._status.namespace}/{self._status.deployment}", reason=self._status.reason,
            workflow_id=workflow.info().workflow_id, reason_kind=self._status.reason_kind,
            step_seconds=self._state.step_seconds, time_to_rollback_seconds=self._time_to_rollback()))

    # ---- helpers ---------------------------------------------------------------------------

    def _time_to_rollback(self) -> float | None:
        began, zero = self._status.rollback_started_at, self._status.weight_zero_at
        return None if began is None or zero is None else (zero - began).total_seconds()

    @property
    def _canary_name(self) -> str:
        return f"{self._status.deployment}-canary"

    @property
    def _baseline_name(self) -> str:
        return f"{self._status.deployment}-baseline"

    async def _route_call(self, activity: str, weight: int, *, replicas: int | None = None) -> WeightResult:
        snapshot = self._state.snapshot
        assert snapshot is not None
        spec = self._inp.rollout.spec
        raw = await self.engine.act(activity, RouteRequest(
            namespace=self._status.namespace, rollout=self._status.name, stable=self._status.deployment,
            canary=self._canary_name, total_replicas=snapshot.replicas, routing=spec.traffic, weight=weight,
            replicas=replicas, verify_seconds=spec.progress_deadline.total_seconds()),
            timeout=spec.progress_deadline + timedelta(seconds=30), heartbeat=timedelta(seconds=10))
        result = (WeightResult.model_validate(raw) if isinstance(raw, dict)
                  else WeightResult(requested=weight, effective=weight, verified=raw))
        self._status.weight = weight
        self._status.effective_weight = result.effective
        self._status.weight_verified = result.verified
        self._status.weight_detail = result.detail
        if result.effective != weight or result.detail:
            self.engine.log(f"weight {weight}%: the canary gets {result.effective:g}%"
                            + (f" ({result.detail})" if result.detail else ""))
        return result

    def _variables(self) -> dict[str, str]:
        return {"namespace": self._status.namespace, "app": self._status.deployment,
                "target": self._status.deployment, "image": self._image, "version": image_version(self._image)}

    @property
    def _evaluate(self) -> Any:
        return self._judges.evaluate(self.engine.evaluator(
            "canary.evaluate_check", lambda check: EvaluateRequest(check=check, variables=self._variables())))

    def _log_step(self) -> None:
        if self._fresh_step:
            self.engine.log(self._status.step_description)

    def _publish(self) -> None:
        self._status.gates = list({**self._state.decided, **self._state.background, **self._state.checks}.values())

    def _show_paused(self, paused: bool) -> None:
        if paused and self._status.phase in (Phase.PROGRESSING, Phase.WAITING_APPROVAL):
            self._status.phase = Phase.PAUSED
        elif not paused and self._status.phase == Phase.PAUSED:
            self._status.phase = Phase.PROGRESSING

    def _stuck_phase(self, stuck: bool) -> None:
        self._status.phase = Phase.ROLLBACK_STUCK if stuck else Phase.ROLLING_BACK

    async def _wait_available(self, name: str) -> None:
        deadline = self._inp.rollout.spec.progress_deadline
        await self.engine.act("canary.wait_available",
                              WaitRequest(namespace=self._status.namespace, name=name,
                                          deadline_seconds=deadline.total_seconds()),
                              timeout=deadline + timedelta(seconds=30), heartbeat=timedelta(seconds=10))

    def _finish(self, phase: Phase, reason: str) -> None:
        self._status.phase = phase
        self._status.reason = reason
        self._status.paused = False
        self._status.finished_at = workflow.now()
        self.engine.log(f"{phase.value}: {reason}")


__all__ = ["CanaryWorkflow", "workflow_id"]
