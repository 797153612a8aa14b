"""The mechanics every workflow of the project shares, written once and used by composition.

An algorithm file (``canary.py``, ``flag_ramp.py``, ``chaos.py``) builds one ``Engine`` around its
state and reads as its algorithm; the engine owns what each of them needs and what is easy to get
subtly wrong:

* **controls** — pause / resume / promote / abort / approve / retry, with validators that reject a
  transition before it reaches history (``Controls`` holds the handlers; a workflow class mixes it in);
* **waits** — every long wait (a pause, an approval, a hold, the measurement loop) wakes on abort and
  promote, and hands over to a new run when the history grows long (``ContinueAsNew``): the
  algorithm keeps its cursor in its state model, so the new run resumes exactly there;
* **the measurement loop** — each check once per interval; its rules are ``workflows/core_looks.py``'s,
  mixed in here (``Measuring``), with the judge's looks (``Judges``);
* **the no-decision policy** — an inconclusive or unmeasurable gate pauses (with a timeout, then
  rollback) or rolls back, as the run's ``onInconclusive`` says; it never promotes. The pause, its
  deadline and the gate it waits for are state (``ControlState.decision``): a new run that looks at
  the same undecided gate joins the pause already pending, with its deadline;
* **compensation** — undo steps each run on their own (one failing does not skip the others, unless
  a step depends on it: capacity is never removed before its replacement serves), with retries and
  backoff; a step that keeps failing is *reported* (phase ``rollback-stuck``, the step and its error,
  a notification and the ``orchestrator_rollback_stuck`` metric) and re-attempted on a slow timer for
  as long as it takes, or at once on ``retry``. Compensation is shielded from cancellation: a
  cancel that lands during it is recorded and the undo runs to its end; the run then ends cancelled;
* **the lifecycle** — body, then compensation on failure, abort, cancellation or an unexpected error
  (``run``), with the stop's kind recorded for the outcome and the metrics.

The decisions themselves (may the run promote, is a pause pending and until when, which undo step
runs next) are the pure core's (``workflows/decide.py``): the engine feeds it events and runs what
it answers. Everything here is deterministic: workflow time, activities by name, no I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.common import (
        EVENTS_KEPT,
        ControlRequest,
        ControlResponse,
        ControlState,
        Event,
        StuckStep,
        UndoProgress,
    )
    from orchestrator.api.requests import NotifyRequest, RollbackStuckRequest
    from orchestrator.gates.model import CheckStatus
    from orchestrator.rails.models import RailsReport, RailsRequest
    from orchestrator.specs.checks import OnInconclusive
    from workflows import decide as core
    from workflows.core_looks import NON_RETRYABLE, Judges, Measuring, describe

T = TypeVar("T")

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                    maximum_interval=timedelta(seconds=10), maximum_attempts=8,
                    non_retryable_error_types=NON_RETRYABLE)
# An undo step that failed through its activity's retries (about a minute) is reported stuck and
# re-attempted on this slow timer, doubling up to the maximum: never silently, never in a tight loop.
STUCK_RETRY_FIRST = timedelta(seconds=30)
STUCK_RETRY_MAX = timedelta(minutes=15)


@dataclass
class Stop(Exception):
    """Why a run stops before it completes; ``kind`` is the outcome's and the metrics' reason."""

    kind: str  # gate | inconclusive | abort | approval-timeout | cancelled | error | refused | traffic | breach
    reason: str
    gate: CheckStatus | None = None

    def __str__(self) -> str:
        return self.reason


class ContinueAsNew(Exception):
    """The history is long: the run hands its whole state to a new run (the algorithm calls ``hand_over``)."""


class MeasureAgain(Exception):
    """Resumed after a pause for a failed or undecided gate: the step is measured again, from its start."""


class Reportable(Protocol):
    """The part of a status model the engine writes."""

    events: list[Event]
    events_dropped: int
    paused: bool
    stuck: StuckStep | None
    waiting_for: str | None


@dataclass
class UndoStep:
    """One compensation step; ``after`` names the steps that must have succeeded first."""

    name: str
    run: Callable[[], Awaitable[Any]]
    after: tuple[str, ...] = ()


@dataclass
class Engine(Measuring):
    kind: str  # canary | flag_ramp | chaos: the notification's and metric's label
    name: str
    status: Reportable
    controls: ControlState
    supports: frozenset[str]
    history_limit: int | None = None
    stuck_phase: Callable[[bool], None] = lambda stuck: None
    """Called with True when an undo step gets stuck and False when it lands."""
    show_paused: Callable[[bool], None] = lambda paused: None
    """Called with True when a pause begins (by hand or for a decision) and False when it ends."""
    undo_says: str = "undoing what was changed"  # what an abort answers: "rolling back", "reverting" ...
    stop: Stop | None = None
    stage: str = "running"  # running | finishing (promoting) | compensating | done
    waiting_approval: bool = False
    _continue: bool = False
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    # ---- events and activities -------------------------------------------------------------

    def log(self, message: str) -> None:
        events = self.status.events
        events.append(Event(at=workflow.now(), message=message))
        if len(events) > EVENTS_KEPT:
            dropped = len(events) - EVENTS_KEPT
            del events[:dropped]
            self.status.events_dropped += dropped
        workflow.logger.info(message)

    async def act(self, name: str, arg: Any, result: type[T] | None = None, *,
                  timeout: timedelta = timedelta(seconds=30), heartbeat: timedelta | None = None,
                  retry: RetryPolicy = RETRY) -> Any:
        return await workflow.execute_activity(
            name, arg, result_type=result, start_to_close_timeout=timeout,
            heartbeat_timeout=heartbeat, retry_policy=retry)

    # ---- stopping, continuing, waiting ------------------------------------------------------

    def apply(self, event: core.Event) -> list[core.Command]:
        """Feed ``event`` to the decision core; its new state replaces the run's, in place (it is shared)."""
        new, commands = core.decide(self.controls, event)
        for name in type(new).model_fields:
            setattr(self.controls, name, getattr(new, name))
        return commands

    def request_stop(self, stop: Stop) -> None:
        if self.stop is None:
            self.stop = stop
            self.apply(core.Stopped(stop.kind, stop.reason))
            self.log(stop.reason if stop.kind != "gate" else f"gate failed: {stop.reason}")

    def raise_if_stopped(self) -> None:
        if self.stop is not None:
            raise self.stop

    def should_continue(self) -> bool:
        if self.stage != "running":
            return False
        if self._continue:
            return True
        info = workflow.info()
        if self.history_limit is not None and info.get_current_history_length() >= self.history_limit:
            return True
        return info.is_continue_as_new_suggested()

    def _woken(self) -> bool:
        return self.stop is not None or self.controls.promote or self.should_continue()

    async def wait(self, until: datetime | None, *, also: Callable[[], bool] = lambda: False,
                   wake_on_promote: bool = True) -> bool:
        """Wait until ``until`` (None: no deadline) or ``also()``; True when the deadline passed.

        Wakes early on a stop (raised) or a promote (returns False), and raises ``ContinueAsNew``
        when the history is long: every caller keeps its cursor in its state, so the next run
        picks up the same wait with the same deadline.
        """

        def woken() -> bool:
            promote = wake_on_promote and self.controls.promote
            return self.stop is not None or promote or self.should_continue() or also()

        timeout = None if until is None else max(until - workflow.now(), timedelta(0))
        if timeout is not None and timeout <= timedelta(0):
            self.raise_if_stopped()
            return True
        try:
            await workflow.wait_condition(woken, timeout=timeout)
        except TimeoutError:
            self.raise_if_stopped()
            return True
        self.raise_if_stopped()
        if self.should_continue():
            raise ContinueAsNew()
        return until is not None and workflow.now() >= until

    def step_timer(self, end: datetime) -> datetime:
        """The end of the timed step under way: ``end`` for a fresh step, the one carried for a resumed one."""
        self.apply(core.StepStarted(end))
        assert self.controls.step_end is not None
        return self.controls.step_end

    def step_done(self) -> None:
        self.apply(core.StepDone())

    def weight_changed(self) -> None:
        """Traffic moved: every watched gate must pass again at the new weight before a promotion."""
        self.apply(core.WeightChanged(workflow.now()))

    async def until_promotable(self) -> None:
        """Before promoting: wait until the core allows it (nothing paused, every watched gate passed)."""
        if core.may_promote(self.controls):
            return
        self.show_paused(self.controls.paused)
        if not self.controls.paused:
            self.status.waiting_for = "every background check to pass at the last weight"
        try:
            await self.wait(None, also=lambda: core.may_promote(self.controls))
        finally:
            self.status.waiting_for = None
            self.show_paused(False)

    async def hold_while_paused(self) -> None:
        """Before a step: wait while paused by hand (abort and promote still work)."""
        if not self.controls.paused:
            return
        self.show_paused(True)
        await self.wait(None, also=lambda: not self.controls.paused)
        self.show_paused(False)

    # ---- background work ---------------------------------------------------------------------

    def spawn(self, work: Awaitable[None]) -> None:
        """Run ``work`` beside the algorithm: its Stop stops the run; a hand-over hands the run over."""

        async def guarded() -> None:
            try:
                await work
            except Stop as stop:
                self.request_stop(stop)
            except ContinueAsNew:
                self._continue = True

        self._background.append(asyncio.create_task(guarded()))

    def cancel_background(self) -> None:
        for task in self._background:
            task.cancel()
        self._background.clear()

    # ---- no decision ---------------------------------------------------------------------------

    async def no_decision(self, status: CheckStatus, policy: OnInconclusive, *, failed: bool = False) -> bool:
        """A gate that cannot decide (or failed, with ``failed``): roll back (raise) or pause until a human decides.

        Returns True when resumed (measure again), False when promoted; raises ``Stop`` on abort, on
        the pause's timeout, or at once under ``action: rollback``. The pause is the core's state: a
        new run that meets the same gate still undecided waits for the same deadline.
        """
        if status.check in self.controls.remeasure:  # resumed before this run looked at the gate again
            self.apply(core.Remeasured(status.check))
            return True
        commands = self.apply(core.Undecided(gate=status.check, reason=status.reason, at=workflow.now(),
                                             timeout=policy.timeout, rollback=policy.action == "rollback",
                                             failed=failed))
        self._raise_rollback(commands, status)
        decision = self.controls.decision
        assert decision is not None
        self.status.paused = True
        if decision.gate != status.check:  # another gate's pause is pending: its decision is this one's too
            await self.wait(None, also=lambda: self.controls.decision is None)
            return not self.controls.promote
        self.status.waiting_for = (f"a decision: {decision.reason} — resume to measure again, promote or abort "
                                   f"(rollback at {decision.deadline:%Y-%m-%d %H:%M:%S} UTC)")
        if any(isinstance(c, core.NotifyPaused) for c in commands):
            self.log(f"paused, no decision: {status.reason} (onInconclusive: pause, timeout {policy.timeout})")
            await self.notify_paused(status.reason)
        else:
            self.log(f"still paused for a decision on {decision.gate} (rollback at {decision.deadline:%H:%M:%S})")
        self.show_paused(True)
        try:
            expired = await self.wait(decision.deadline, also=lambda: self.controls.decision is None,
                                      wake_on_promote=True)
        finally:
            self.status.waiting_for = None
            self.show_paused(False)
        if expired:
            self._raise_rollback(self.apply(core.TimerFired(workflow.now())), status)
        if status.check in self.controls.remeasure:
            self.apply(core.Remeasured(status.check))
        self.status.paused = self.controls.paused
        return not self.controls.promote

    def _raise_rollback(self, commands: list[core.Command], status: CheckStatus) -> None:
        for command in commands:
            if isinstance(command, core.RollBack):
                self.status.paused = False
                raise Stop(command.kind, command.reason, status)

    async def notify_paused(self, reason: str) -> None:
        await self.notify(NotifyRequest(kind=self.kind, name=self.name, outcome="paused", reason=reason,
                                        workflow_id=workflow.info().workflow_id))

    async def notify(self, request: NotifyRequest) -> None:
        """Tell the operator's webhook; one attempt, and a failure never changes the outcome."""
        try:
            await self.act("notify.outcome", request, timeout=timedelta(seconds=10),
                           retry=RetryPolicy(maximum_attempts=1))
        except ActivityError:
            workflow.logger.warning("the %s notification failed", request.outcome)

    # ---- compensation --------------------------------------------------------------------------

    async def compensate(self, steps: Sequence[UndoStep]) -> None:
        """Run every undo step until each has landed; report and keep re-attempting the ones that fail.

        Shielded from cancellation: a cancel that lands meanwhile is recorded (``cancel_requested``)
        and the undo goes on to its end. Called from ``run`` the run then ends cancelled there;
        called on its own (a finishing revert), the cancellation is raised once every step landed.
        """
        await self.shielded(self._compensate(steps))
        if self.controls.cancel_requested and self.stage != "compensating":
            raise asyncio.CancelledError()

    async def shielded(self, work: Awaitable[T]) -> T:
        """Await ``work`` to its end: the workflow's cancellation is recorded, never delivered to it."""
        # Workflow cancellation cancels the run's own task only: work in a task of its own runs on.
        task = asyncio.ensure_future(work)
        while True:
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                if task.cancelled():
                    raise
                if not self.controls.cancel_requested:
                    self.apply(core.Cancel())
                    self.log(f"cancellation requested: {self.undo_says} to the end first")

    async def _compensate(self, steps: Sequence[UndoStep]) -> None:
        by_name = {step.name: step for step in steps}
        queue = [c for c in self.apply(core.CompensationStarted(tuple((s.name, s.after) for s in steps)))
                 if isinstance(c, core.RunUndo)]
        delay = STUCK_RETRY_FIRST
        attempts = 0
        while True:
            failed: list[UndoProgress] = []
            while queue:  # one round: each step the core says may run, in order
                step = by_name[queue.pop(0).step]
                try:
                    await step.run()
                except ActivityError as err:
                    self.apply(core.UndoFailed(step.name, describe(err)))
                    failed.append(next(u for u in self.controls.undo if u.name == step.name))
                    continue
                queue.extend(c for c in self.apply(core.UndoApplied(step.name)) if isinstance(c, core.RunUndo))
            if core.compensation_done(self.controls):
                if self.status.stuck is not None:
                    self.log(f"{self.status.stuck.step} landed after {self.status.stuck.attempts} attempt(s)")
                    self.status.stuck = None
                    self.stuck_phase(False)
                    await self._report_stuck(RollbackStuckRequest(
                        kind=self.kind, workflow_id=workflow.info().workflow_id,
                        name=self.name, step="", stuck=False))
                return
            attempts += 1
            step_state = failed[0] if failed else core.stuck(self.controls)[0]
            retry_at = workflow.now() + delay
            first = self.status.stuck is None
            self.status.stuck = StuckStep(
                step=step_state.name, error=step_state.error, attempts=attempts,
                since=workflow.now() if first or self.status.stuck is None else self.status.stuck.since,
                next_attempt_at=retry_at)
            if first:
                self.stuck_phase(True)
                self.log(f"rollback stuck at {step_state.name}: {step_state.error}; re-attempting on a slow timer "
                         "(or now, with the retry control)")
            # Renewed at every attempt: the metric's series expires unless renewed (right with several workers).
            await self._report_stuck(RollbackStuckRequest(kind=self.kind,
                                                          workflow_id=workflow.info().workflow_id,
                                                          name=self.name, step=step_state.name,
                                                          error=step_state.error))
            asked = self.controls.retries
            try:
                await workflow.wait_condition(lambda asked=asked: self.controls.retries != asked,  # type: ignore[misc]
                                              timeout=delay)
                commands: list[core.Command] = [core.RunUndo(u.name) for u in core.stuck(self.controls)
                                                if u.name in core.runnable(self.controls)]
            except TimeoutError:
                delay = min(delay * 2, STUCK_RETRY_MAX)
                commands = self.apply(core.TimerFired(workflow.now()))
            queue = [c for c in commands if isinstance(c, core.RunUndo)]

    async def _report_stuck(self, report: RollbackStuckRequest) -> None:
        try:
            await workflow.execute_activity(
                "notify.rollback_stuck", report, start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(maximum_attempts=2))
        except ActivityError:
            workflow.logger.warning("could not report the stuck state of %s", self.name)

    # ---- the lifecycle -------------------------------------------------------------------------

    async def run(self, body: Callable[[], Awaitable[None]],
                  undo: Callable[[Stop], Awaitable[None]]) -> bool:
        """Run ``body``; on any stop run ``undo`` to completion. True when the body completed.

        A cancellation is re-raised once ``undo`` has run, so the workflow ends cancelled; a
        ``ContinueAsNew`` with no stop pending propagates to the caller, which hands over.
        """
        cancelled = False
        try:
            await body()
            return True
        except ContinueAsNew:
            if self.stop is None:
                raise
        except Stop as stop:
            self.request_stop(stop)
        except asyncio.CancelledError:
            self.stop = Stop("cancelled", "the workflow was cancelled")
            self.apply(core.Cancel())
            cancelled = True
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):  # the workflow's cancellation, met inside an activity
                self.stop = Stop("cancelled", "the workflow was cancelled")
                self.apply(core.Cancel())
                cancelled = True
            else:
                self.request_stop(activity_stop(err))
        except Exception as err:
            self.request_stop(Stop("error", f"unexpected failure: {err}"))
        finally:
            self.cancel_background()
        assert self.stop is not None
        self.stage = "compensating"
        await self.shielded(undo(self.stop))
        if cancelled or self.controls.cancel_requested:
            raise asyncio.CancelledError()
        return False

    async def preflight(self, request: RailsRequest) -> list[str]:
        """Every rail, before anything changes: a refusal stops the run (``refused``) with the rail's reason."""
        report: RailsReport = await self.act("rails.check", request, RailsReport, timeout=timedelta(seconds=60))
        lines = [f"{v.rail}: {v.status}: {v.reason}" for v in report.verdicts]
        if report.refused:
            raise Stop("refused", f"refused by the pre-flight rails: {report.reason}")
        return lines

    async def hand_over(self, next_input: Any) -> None:
        """Continue as a new run with ``next_input`` (which carries the whole state)."""
        self.cancel_background()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(next_input)

    # ---- controls (called by the ``Controls`` handlers) ----------------------------------------

    def validate(self, control: str) -> None:
        if control not in self.supports:
            raise ValueError(f"{control} is not supported here (supported: {', '.join(sorted(self.supports))})")
        if control == "retry":
            if self.status.stuck is None:
                raise ValueError("nothing is stuck")
            return
        if self.stage != "running":
            raise ValueError("the run has ended" if self.stage == "done" else f"the run is {self.stage}")
        if self.stop is not None:
            raise ValueError("the run is stopping")
        if control == "pause" and self.controls.paused:
            raise ValueError("already paused")
        if control == "resume" and not self.controls.paused:
            raise ValueError("not paused")
        if control == "approve" and not self.waiting_approval:
            raise ValueError("nothing waits for approval")

    def control(self, control: str, req: ControlRequest) -> ControlResponse:
        by = f" by {req.by}" if req.by else ""
        if control != "abort":  # an abort is a stop: ``request_stop`` tells the core
            self.apply(core.Control(control))
        if control == "pause":
            self.status.paused = True
            self.show_paused(True)
            self.log(f"paused{by}")
            return ControlResponse(accepted=True, message="paused: nothing new starts until resumed")
        if control == "resume":
            self.status.paused = False
            self.show_paused(False)
            self.log(f"resumed{by}")
            return ControlResponse(accepted=True, message="resumed")
        if control == "promote":
            self.status.paused = False
            self.show_paused(False)
            self.log(f"promotion requested{by}")
            return ControlResponse(accepted=True, message="promoting: remaining steps are skipped")
        if control == "approve":
            self.log(f"approval received{by}")
            return ControlResponse(accepted=True, message="approved")
        if control == "retry":
            self.log(f"retry requested{by}")
            return ControlResponse(accepted=True, message="re-attempting the stuck step now")
        reason = f"aborted{by}" + (f": {req.reason}" if req.reason else "")
        self.request_stop(Stop("kill" if req.off else "abort", reason))
        return ControlResponse(accepted=True, message=self.undo_says)


class Controls:
    """The control handlers, once for every workflow: each delegates to ``self.engine``.

    A workflow mixes this in and sets ``engine`` in its ``__init__``; what it does not support
    (``Engine.supports``) is refused by the validator before it reaches history.
    """

    engine: Engine
    CONTROLS: ClassVar[tuple[str, ...]] = ("pause", "resume", "promote", "abort", "approve", "retry")

    @workflow.update
    def pause(self, req: ControlRequest) -> ControlResponse:
        return self.engine.control("pause", req)

    @pause.validator
    def _validate_pause(self, req: ControlRequest) -> None:
        self.engine.validate("pause")

    @workflow.update
    def resume(self, req: ControlRequest) -> ControlResponse:
        return self.engine.control("resume", req)

    @resume.validator
    def _validate_resume(self, req: ControlRequest) -> None:
        self.engine.validate("resume")

    @workflow.update
    def promote(self, req: ControlRequest) -> ControlResponse:
        return self.engine.control("promote", req)

    @promote.validator
    def _validate_promote(self, req: ControlRequest) -> None:
        self.engine.validate("promote")

    @workflow.update
    def abort(self, req: ControlRequest) -> ControlResponse:
        return self.engine.control("abort", req)

    @abort.validator
    def _validate_abort(self, req: ControlRequest) -> None:
        self.engine.validate("abort")

    @workflow.update
    def approve(self, req: ControlRequest) -> ControlResponse:
        return self.engine.control("approve", req)

    @approve.validator
    def _validate_approve(self, req: ControlRequest) -> None:
        self.engine.validate("approve")

    @workflow.update
    def retry(self, req: ControlRequest) -> ControlResponse:
        return self.engine.control("retry", req)

    @retry.validator
    def _validate_retry(self, req: ControlRequest) -> None:
        self.engine.validate("retry")


def activity_stop(err: ActivityError) -> Stop:
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.type == "RefusedError":
        return Stop("refused", cause.message)
    return Stop("error", f"{err.activity_type or 'activity'} failed: {describe(err)}")


__all__ = ["NON_RETRYABLE", "ContinueAsNew", "Controls", "Engine", "Judges", "MeasureAgain", "Stop", "UndoStep",
           "activity_stop", "describe"]
