"""The canary rollout, as one durable workflow.

    snapshot stable ─► create canary (and baseline) ─► for each step:
        setWeight  → shift traffic, wait until the canary serves it
        pause      → hold for a duration, or until approved (timeout → rollback)
        analysis   → evaluate checks every interval until each one decides
    background checks run through all steps; any failing gate, ``abort``, a
    cancellation or an unexpected error stops the walk ─► rollback:
        traffic to stable (weight 0) ─► restore stable if promotion had begun
        ─► remove canary and baseline
    otherwise ─► promote: stable gets the new template, waits until available,
        takes all traffic back, canary removed.

Rollback runs in ``finally`` so it also runs when the workflow is cancelled. Every side
effect is an idempotent activity, so a worker that dies mid-step is replaced by one that
replays history and carries on without applying any step twice.
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
    from orchestrator.activities.models import (
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
    )
    from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement
    from orchestrator.gates.model import Phase as GatePhase
    from orchestrator.gates.verdict import decide
    from orchestrator.specs.canary import AnalysisStep, PauseStep, ReplicasRouting, SetWeightStep
    from orchestrator.specs.checks import Check
    from workflows.canary_models import (
        FINAL_PHASES,
        CanaryInput,
        CanaryResume,
        CanaryStatus,
        ControlRequest,
        ControlResponse,
        Event,
        Phase,
    )

T = TypeVar("T")

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10), maximum_attempts=8)
# Rollback must eventually happen: keep trying for as long as it takes.
RETRY_FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                            maximum_interval=timedelta(seconds=30), maximum_attempts=0)
FAILED_GATE = {CheckPhase.FAILED, CheckPhase.ERROR, CheckPhase.INCONCLUSIVE}


@dataclass
class _Stop(Exception):
    """Why the walk stopped before promotion."""

    kind: str  # gate | abort | approval-timeout | error
    reason: str
    gate: CheckStatus | None = None


class _Continue(Exception):
    """History is long: continue as a new run from ``step`` (keeping a pause's deadline)."""

    def __init__(self, step: int, deadline: datetime | None = None) -> None:
        super().__init__(step)
        self.step = step
        self.deadline = deadline


@workflow.defn(name="CanaryRollout")
class CanaryWorkflow:
    @workflow.init
    def __init__(self, inp: CanaryInput) -> None:
        spec = inp.rollout.spec
        self._inp = inp
        self._image = inp.image or spec.change.image or ""
        self._status = CanaryStatus(
            name=inp.rollout.metadata.name,
            namespace=spec.target.namespace,
            deployment=spec.target.deployment,
            image=self._image,
            phase=Phase.STARTING,
            step=0,
            steps=len(spec.steps),
        )
        self._stop: _Stop | None = None
        self._paused = False
        self._promote_now = False
        self._approved = False
        self._stable_modified = False
        self._gates: dict[str, CheckStatus] = {}
        self._snapshot: StableSnapshot | None = None
        self._step_seconds: list[tuple[str, float]] = []
        self._resume_deadline: datetime | None = None
        if inp.resume is not None:
            self._status = inp.resume.status
            self._snapshot = inp.resume.snapshot
            self._paused = inp.resume.paused
            self._step_seconds = list(inp.resume.step_seconds)
            self._resume_deadline = inp.resume.step_deadline

    # ---- the algorithm -------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: CanaryInput) -> CanaryStatus:
        spec = inp.rollout.spec
        first = 0 if inp.resume is None else inp.resume.step
        if inp.resume is None:
            self._status.started_at = workflow.now()
            self._snapshot = await self._act(
                "canary.snapshot_stable",
                DeploymentRef(namespace=spec.target.namespace, name=spec.target.deployment,
                              container=spec.target.container),
                StableSnapshot,
            )
            self._status.image = self._image = self._image or self._snapshot.image
        background: list[asyncio.Task[None]] = []
        promoted = False
        continuing: _Continue | None = None
        try:
            if inp.resume is None:
                await self._create_copies()
                self._status.phase = Phase.PROGRESSING
            else:
                self._log(f"continued as a new run at step {first + 1} (history size)")
            background = [asyncio.create_task(self._background(c)) for c in spec.background_checks]
            for index in range(first, len(spec.steps)):
                step = spec.steps[index]
                self._status.step = index
                if index > first and self._should_continue():
                    raise _Continue(index)
                await self._hold_while_paused()
                if self._promote_now:
                    self._log("promote requested: remaining steps skipped")
                    break
                self._raise_if_stopped()
                began = workflow.now()
                await self._run_step(step)
                kind = next(iter(step.model_dump(by_alias=True)))
                self._step_seconds.append((kind, (workflow.now() - began).total_seconds()))
                self._raise_if_stopped()
            self._status.step = len(spec.steps)
            self._raise_if_stopped()
            for task in background:
                task.cancel()
            await self._promote()
            promoted = True
        except _Continue as cont:
            continuing = cont
        except _Stop as stop:
            self._stop = stop
        except asyncio.CancelledError:
            self._stop = _Stop("cancelled", "the workflow was cancelled")
            raise
        except ActivityError as err:
            cause = err.cause or err
            self._stop = _Stop("error", f"{err.activity_type or 'activity'} failed: {cause}")
        except Exception as err:
            self._stop = _Stop("error", f"unexpected failure: {err}")
        finally:
            for task in background:
                task.cancel()
            if continuing is None:
                if not promoted:
                    await self._rollback()
                await self._notify()
        if continuing is not None and self._stop is None:
            assert self._snapshot is not None
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(CanaryInput(
                rollout=inp.rollout, image=self._image, history_limit=inp.history_limit,
                resume=CanaryResume(status=self._status, snapshot=self._snapshot, step=continuing.step,
                                    step_deadline=continuing.deadline, paused=self._paused,
                                    step_seconds=self._step_seconds)))
        if continuing is not None:
            # A stop arrived while continuing: roll back here rather than hand a stopping rollout on.
            await self._rollback()
            await self._notify()
        return self._status

    def _should_continue(self) -> bool:
        info = workflow.info()
        limit = self._inp.history_limit
        if limit is not None and info.get_current_history_length() >= limit:
            return True
        return info.is_continue_as_new_suggested()

    async def _create_copies(self) -> None:
        assert self._snapshot is not None
        spec = self._inp.rollout.spec
        replicas_mode = isinstance(spec.traffic, ReplicasRouting)
        # With no mesh the canary starts empty and setWeight scales it; with a router it is
        # sized up front and receives traffic only through route weights.
        size = spec.canary_replicas or (0 if replicas_mode else self._snapshot.replicas)
        self._log(f"creating {self._canary_name} ({size} replicas) with image {self._image}")
        await self._act("canary.ensure_copy", CopyRequest(
            snapshot=self._snapshot, name=self._canary_name, role="canary", rollout=self._status.name,
            replicas=size, image=self._image, env=spec.change.env))
        if spec.baseline:
            await self._act("canary.ensure_copy", CopyRequest(
                snapshot=self._snapshot, name=self._baseline_name, role="baseline",
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
            self._log(self._status.step_description)
            deadline = step.analysis.duration
            results = await asyncio.gather(*(self._watch(c, deadline) for c in step.analysis.checks))
            del results

    async def _set_weight(self, weight: int) -> None:
        self._status.step_description = f"setWeight {weight}"
        self._log(f"shifting {weight}% of traffic to the canary")
        deadline = self._inp.rollout.spec.progress_deadline
        verified = await self._act("canary.set_weight", self._route(weight), timeout=deadline + timedelta(seconds=30),
                                   heartbeat=timedelta(seconds=10))
        self._status.weight = weight
        if weight > 0 and self._status.canary_traffic_at is None:
            self._status.canary_traffic_at = workflow.now()
        if verified is False:
            raise _Stop("error", f"the router did not confirm weight {weight} within the progress deadline")

    async def _pause(self, step: PauseStep) -> None:
        pause = step.pause
        now = workflow.now()
        resumed_deadline, self._resume_deadline = self._resume_deadline, None
        if pause.until_approved:
            assert pause.timeout is not None
            deadline = resumed_deadline or now + pause.timeout
            self._status.phase = Phase.WAITING_APPROVAL
            self._status.waiting_for = f"manual approval (timeout {pause.timeout}, then {pause.on_timeout})"
            self._status.step_description = "waiting for approval"
            if resumed_deadline is None:
                self._log(self._status.step_description)
                self._approved = False
            try:
                await workflow.wait_condition(
                    lambda: self._approved or self._promote_now or self._stop is not None or self._should_continue(),
                    timeout=max(deadline - workflow.now(), timedelta(0)),
                )
            except TimeoutError:
                if pause.on_timeout == "rollback":
                    raise _Stop("approval-timeout", f"nobody approved within {pause.timeout}") from None
                self._log("approval timed out; onTimeout says promote")
            finally:
                self._status.waiting_for = None
                if self._status.phase == Phase.WAITING_APPROVAL:
                    self._status.phase = Phase.PROGRESSING
            if self._approved:
                self._log("approved")
            elif not self._promote_now and self._stop is None and workflow.now() < deadline:
                raise _Continue(self._status.step, deadline)
        else:
            assert pause.duration is not None
            deadline = resumed_deadline or now + pause.duration
            self._status.step_description = f"pause {pause.duration}"
            if resumed_deadline is None:
                self._log(self._status.step_description)
            try:
                await workflow.wait_condition(
                    lambda: self._stop is not None or self._promote_now or self._should_continue(),
                    timeout=max(deadline - workflow.now(), timedelta(0)),
                )
            except TimeoutError:
                return
            if self._stop is None and not self._promote_now:
                raise _Continue(self._status.step, deadline)

    async def _watch(self, check: Check, duration: timedelta | None) -> None:
        """Evaluate one check every interval until it decides (or its step or the rollout ends)."""
        measurements: list[Measurement] = []
        started = workflow.now()
        await self._sleep(check.initial_delay)
        while self._stop is None:
            measurements.append(await self._measure(check))
            finished = duration is not None and workflow.now() - started >= duration
            status = decide(check, measurements, finished=finished)
            self._gates[check.name] = status
            self._status.gates = list(self._gates.values())
            if status.phase in FAILED_GATE:
                if self._stop is None:
                    self._stop = _Stop("gate", status.reason, status)
                    self._log(f"gate failed: {status.reason}")
                raise self._stop
            if status.phase == CheckPhase.SUCCESSFUL:
                return
            await self._sleep(check.interval)
        raise self._stop

    async def _background(self, check: Check) -> None:
        # A failing background check records the stop; the step loop notices it and rolls back.
        with contextlib.suppress(_Stop):
            await self._watch(check, None)

    async def _measure(self, check: Check) -> Measurement:
        variables = {
            "namespace": self._status.namespace,
            "app": self._status.deployment,
            "target": self._status.deployment,
            "image": self._image,
            "version": self._image.rsplit(":", 1)[-1] if ":" in self._image else self._image,
        }
        try:
            measurement: Measurement = await self._act(
                "canary.evaluate_check", EvaluateRequest(check=check, variables=variables), Measurement,
                retry=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=1)))
            return measurement
        except ActivityError as err:
            # The metric backend itself failed: an error measurement, which the limits turn into a verdict.
            return Measurement(check=check.name, phase=GatePhase.ERROR, query=check.query,
                               message=f"evaluation failed: {err.cause or err}", at=workflow.now())

    async def _promote(self) -> None:
        assert self._snapshot is not None
        spec = self._inp.rollout.spec
        self._status.phase = Phase.PROMOTING
        self._log(f"promoting {self._image} to {spec.target.deployment}")
        self._stable_modified = True
        await self._act("canary.update_stable", TemplateUpdate(
            namespace=spec.target.namespace, name=spec.target.deployment, container=self._snapshot.container,
            image=self._image, env=spec.change.env), retry=RETRY_FOREVER)
        await self._act("canary.reset_traffic", self._route(0), retry=RETRY_FOREVER)
        await self._wait_available(spec.target.deployment)
        self._status.weight = 0
        await self._remove_copies(keep=False)
        self._finish(Phase.PROMOTED, "all steps passed" if not self._promote_now else "promoted on request")

    async def _rollback(self) -> None:
        """Compensation: traffic back to stable first (the fast, decisive part), then clean up."""
        stop = self._stop or _Stop("error", "stopped before promotion")
        spec = self._inp.rollout.spec
        self._status.phase = Phase.ROLLING_BACK
        self._status.reason = stop.reason
        self._status.decisive_gate = stop.gate
        self._status.rollback_started_at = workflow.now()
        self._log(f"rolling back: {stop.reason}")
        problems: list[str] = []
        try:
            await self._act("canary.reset_traffic", self._route(0), retry=RETRY_FOREVER)
            self._status.weight = 0
            self._status.weight_zero_at = workflow.now()
            if self._stable_modified and spec.rollback.restore_stable and self._snapshot is not None:
                await self._act("canary.restore_stable", TemplateRestore(
                    namespace=spec.target.namespace, name=spec.target.deployment,
                    template=self._snapshot.template), retry=RETRY_FOREVER)
                await self._wait_available(spec.target.deployment)
            await self._remove_copies(keep=spec.rollback.keep_canary)
        except ActivityError as err:
            problems.append(str(err.cause or err))
        if problems:
            self._finish(Phase.FAILED, f"{stop.reason}; rollback incomplete: {'; '.join(problems)}")
        elif stop.kind in ("abort", "cancelled"):
            self._finish(Phase.ABORTED, stop.reason)
        else:
            self._finish(Phase.ROLLED_BACK, stop.reason)

    async def _remove_copies(self, keep: bool) -> None:
        ns = self._status.namespace
        names = [self._canary_name] + ([self._baseline_name] if self._inp.rollout.spec.baseline else [])
        for name in names:
            if keep:
                await self._act("canary.scale", ScaleRequest(namespace=ns, name=name, replicas=0),
                                retry=RETRY_FOREVER)
            else:
                await self._act("canary.delete_copy", DeploymentRef(namespace=ns, name=name),
                                retry=RETRY_FOREVER)

    async def _notify(self) -> None:
        try:
            await workflow.execute_activity(
                "notify.outcome",
                NotifyRequest(kind="canary", name=self._status.name, outcome=self._status.phase.value,
                              target=f"{self._status.namespace}/{self._status.deployment}",
                              reason=self._status.reason, workflow_id=workflow.info().workflow_id,
                              reason_kind=self._stop.kind if self._stop else None,
                              step_seconds=self._step_seconds),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
        except ActivityError:
            pass  # a notification never changes the outcome

    # ---- controls --------------------------------------------------------------------------

    @workflow.query
    def status(self) -> CanaryStatus:
        return self._status

    @workflow.update
    def pause(self, req: ControlRequest) -> ControlResponse:
        self._paused = True
        self._status.paused = True
        self._log(f"paused{self._by(req)}")
        return ControlResponse(accepted=True, message="paused: no further step starts until resumed")

    @pause.validator
    def _validate_pause(self, req: ControlRequest) -> None:
        self._require_running()
        if self._paused:
            raise ValueError("already paused")

    @workflow.update
    def resume(self, req: ControlRequest) -> ControlResponse:
        self._paused = False
        self._status.paused = False
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
        return ControlResponse(accepted=True, message="promoting: remaining steps are skipped")

    @promote.validator
    def _validate_promote(self, req: ControlRequest) -> None:
        self._require_running()

    @workflow.update
    def abort(self, req: ControlRequest) -> ControlResponse:
        reason = f"aborted{self._by(req)}" + (f": {req.reason}" if req.reason else "")
        if self._stop is None:
            self._stop = _Stop("abort", reason)
        self._log(reason)
        return ControlResponse(accepted=True, message="rolling back")

    @abort.validator
    def _validate_abort(self, req: ControlRequest) -> None:
        self._require_running()

    @workflow.update
    def approve(self, req: ControlRequest) -> ControlResponse:
        self._approved = True
        self._log(f"approval received{self._by(req)}")
        return ControlResponse(accepted=True, message="approved")

    @approve.validator
    def _validate_approve(self, req: ControlRequest) -> None:
        self._require_running()
        if self._status.phase != Phase.WAITING_APPROVAL:
            raise ValueError(f"nothing waits for approval (phase: {self._status.phase.value})")

    # ---- helpers ---------------------------------------------------------------------------

    def _require_running(self) -> None:
        if self._status.phase in FINAL_PHASES or self._status.phase in (Phase.ROLLING_BACK, Phase.PROMOTING):
            raise ValueError(f"the rollout is {self._status.phase.value}")
        if self._stop is not None:
            raise ValueError("the rollout is stopping")

    @staticmethod
    def _by(req: ControlRequest) -> str:
        return f" by {req.by}" if req.by else ""

    @property
    def _canary_name(self) -> str:
        return f"{self._status.deployment}-canary"

    @property
    def _baseline_name(self) -> str:
        return f"{self._status.deployment}-baseline"

    def _route(self, weight: int) -> RouteRequest:
        assert self._snapshot is not None
        return RouteRequest(
            namespace=self._status.namespace, rollout=self._status.name, stable=self._status.deployment,
            canary=self._canary_name, total_replicas=self._snapshot.replicas,
            routing=self._inp.rollout.spec.traffic, weight=weight,
            verify_seconds=self._inp.rollout.spec.progress_deadline.total_seconds())

    def _raise_if_stopped(self) -> None:
        if self._stop is not None:
            raise self._stop

    async def _hold_while_paused(self) -> None:
        if self._paused:
            self._status.phase = Phase.PAUSED
            await workflow.wait_condition(lambda: not self._paused or self._stop is not None)
            if self._status.phase == Phase.PAUSED:
                self._status.phase = Phase.PROGRESSING

    async def _sleep(self, duration: timedelta) -> None:
        """Sleep, waking early when the rollout stops or is promoted."""
        if duration.total_seconds() <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(
                lambda: self._stop is not None or self._promote_now, timeout=duration)

    async def _wait_available(self, name: str) -> None:
        deadline = self._inp.rollout.spec.progress_deadline
        await self._act("canary.wait_available",
                        WaitRequest(namespace=self._status.namespace, name=name,
                                    deadline_seconds=deadline.total_seconds()),
                        timeout=deadline + timedelta(seconds=30), heartbeat=timedelta(seconds=10))

    async def _act(self, name: str, arg: Any, result: type[T] | None = None, *,
                   timeout: timedelta = timedelta(seconds=30), heartbeat: timedelta | None = None,
                   retry: RetryPolicy = RETRY) -> Any:
        return await workflow.execute_activity(
            name, arg, result_type=result, start_to_close_timeout=timeout,
            heartbeat_timeout=heartbeat, retry_policy=retry)

    def _finish(self, phase: Phase, reason: str) -> None:
        self._status.phase = phase
        self._status.reason = reason
        self._status.finished_at = workflow.now()
        self._log(f"{phase.value}: {reason}")

    def _log(self, message: str) -> None:
        self._status.events.append(Event(at=workflow.now(), message=message))
        workflow.logger.info(message)


def workflow_id(namespace: str, deployment: str) -> str:
    """One rollout per target: the workflow id is derived from the target."""
    return f"canary-{namespace}-{deployment}"


__all__ = ["CanaryWorkflow", "workflow_id"]
