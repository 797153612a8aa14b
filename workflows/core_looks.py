"""The measurement loop and the judge's looks: how a run looks at its checks, written once.

Mixed into the engine (``Measuring``) and composed by the algorithms (``Judges``). The rules:

* each check is looked at once per interval, no matter what: a promote or abort *ends* the loop,
  it never makes it spin; a look that is due is taken even as the step ends;
* transient metric-backend errors are retried within the interval; only an interval that could not
  be measured at all counts as one error, and a cancelled look is the cancellation, never an error;
* a series that has not appeared yet is *waiting for data* (not counted) until ``waitForData``
  after the subject began receiving traffic; after that, or once data was seen, ``noData`` applies;
* a verdict not acted on yet (a failure, or a gate that could not decide) is acted on when a new
  run meets it: a hand-over never turns a pending decision into a passed step;
* checks watched across steps (``watch``: background checks) report each look to the decision
  core (``workflows/decide.py``) as the latest verdict a promotion needs, and their success is
  never final: a judge keeps judging at every later weight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.common import ControlState
    from orchestrator.gates.judge import (
        JudgeFinishRequest,
        JudgeLookRequest,
        JudgeLookResult,
        JudgeState,
        JudgeVerdict,
        alpha_per_check,
        rollout_alpha,
    )
    from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement
    from orchestrator.gates.model import Phase as GatePhase
    from orchestrator.gates.verdict import advance, finish, start
    from orchestrator.specs.checks import Check
    from workflows import decide as core

T = TypeVar("T")

NON_RETRYABLE = ["ProgrammingError", "RefusedError", "SpecError"]


class Acts(Protocol):
    """What ``Judges`` needs of the engine: running an activity by name."""

    async def act(self, name: str, arg: Any, result: type[T] | None = None, *,
                  timeout: timedelta = ..., heartbeat: timedelta | None = None,
                  retry: RetryPolicy = ...) -> Any: ...


class Measuring:
    """The measurement loop, mixed into ``Engine`` (which provides the members declared here)."""

    controls: ControlState

    if TYPE_CHECKING:
        def raise_if_stopped(self) -> None: ...

        def apply(self, event: core.Event) -> list[core.Command]: ...

        async def wait(self, until: datetime | None, *, also: Callable[[], bool] = ...,
                       wake_on_promote: bool = True) -> bool: ...

    async def measure(
        self,
        checks: Sequence[Check],
        states: dict[str, CheckStatus],
        evaluate: Callable[[Check], Awaitable[Measurement]],
        *,
        started: datetime,
        until: datetime | None,
        data_since: Callable[[], datetime | None],
        on_verdict: Callable[[Check, CheckStatus], Awaitable[CheckStatus]],
        publish: Callable[[], None] = lambda: None,
        end_on_promote: bool = True,
        extend: Callable[[list[Check]], Awaitable[datetime | None]] | None = None,
        hold: bool = False,
        conclude: Callable[[Check, CheckStatus], Awaitable[CheckStatus]] | None = None,
        watch: bool = False,
    ) -> None:
        """Look at every check once per interval until each decides, ``until`` passes or a promote ends it.

        ``states`` (keyed by check name) is read and written in place: it is part of the run's state,
        so a hand-over carries every counter. ``on_verdict`` is told of every final verdict that is not
        a success; it raises ``Stop`` or returns the status to carry on with (e.g. measured afresh).
        ``extend`` is asked, when ``until`` passes, whether the step goes on (a new deadline: not enough
        traffic yet, a check still counting, paused by hand) or ends (None). With ``hold`` the step lasts
        until ``until`` even when every check has decided (a ramp stage's hold time). ``conclude``
        decides a judge check still open when the step ends (see ``Judges``). With ``watch`` the checks
        are watched across steps (background checks): each look is the core's latest verdict for the
        promotion, and a success is never final (a judge keeps judging at every later weight).
        """
        for check in checks:
            states.setdefault(check.name, start(check))
        for check in checks:
            status = states[check.name]
            if status.phase.final and status.phase is not CheckPhase.SUCCESSFUL and not self.controls.promote:
                # A new run meets a verdict not acted on yet (a decision pause pending, or resumed since):
                # it is acted on again, and the core keeps the pause and its deadline as they were.
                states[check.name] = await on_verdict(check, status)
        while True:
            self.raise_if_stopped()
            if end_on_promote and self.controls.promote:
                return
            now = workflow.now()
            open_checks = [c for c in checks if not states[c.name].phase.final
                           or (watch and states[c.name].phase is CheckPhase.SUCCESSFUL)]
            due = {c.name: self._due(c, states[c.name], started) for c in open_checks}
            ready = [c for c in open_checks if due[c.name] <= now]
            if ready:  # a look that is due is taken, even as the step ends
                looks = await asyncio.gather(*(self._look(c, evaluate) for c in ready))
                since = data_since()
                for check, measurement in zip(ready, looks, strict=True):
                    before = states[check.name]
                    if watch and before.phase is CheckPhase.SUCCESSFUL:
                        before = before.model_copy(update={"phase": CheckPhase.RUNNING})
                    after = states[check.name] = self._fold(check, before, measurement, due[check.name],
                                                            since or started)
                    changed = self.controls.weight_changed_at
                    if watch and (changed is None or now >= changed):  # a look begun before the change is stale
                        waiting = not after.phase.final and after.measurements == before.measurements
                        self.apply(core.Looked(check.name, core.verdict_of(
                            after.phase, after.last.phase if after.last else None, waiting)))
                publish()
                for check in ready:
                    status = states[check.name]
                    if status.phase.final and status.phase is not CheckPhase.SUCCESSFUL:
                        states[check.name] = await on_verdict(check, status)
                publish()
                continue
            if until is not None and now >= until and extend is not None:
                later = await extend(open_checks)
                if later is not None and later > now:
                    until = later
                    continue
            if until is not None and now >= until:
                for check in open_checks:
                    if check.judge is not None and conclude is not None:
                        states[check.name] = await conclude(check, states[check.name])
                    else:
                        states[check.name] = finish(check, states[check.name])
                publish()
                for check in open_checks:
                    if states[check.name].phase is not CheckPhase.SUCCESSFUL:
                        states[check.name] = await on_verdict(check, states[check.name])
                return
            if not open_checks and not (hold and until is not None):
                return
            wake = min([*due.values(), *([until] if until is not None else [])])
            await self.wait(wake, wake_on_promote=end_on_promote)

    @staticmethod
    def _due(check: Check, status: CheckStatus, started: datetime) -> datetime:
        if status.next_at is not None:
            return status.next_at
        return started + check.initial_delay

    def _fold(self, check: Check, status: CheckStatus, m: Measurement, scheduled: datetime,
              since: datetime) -> CheckStatus:
        now = workflow.now()
        # The interval is kept whatever happened: the next look is one interval after this one was due,
        # or one interval from now when the look itself ran late (looks are skipped, never bunched).
        next_at = scheduled + check.interval
        if next_at <= now:
            next_at = now + check.interval
        waiting_until = since + check.wait_for_data
        if (m.no_data and m.phase is not GatePhase.SUCCESSFUL and not status.data_seen
                and now < waiting_until):
            return status.model_copy(update={
                "last": m, "next_at": next_at,
                "reason": f"{check.name} running: waiting for data until {waiting_until:%H:%M:%S} "
                          f"({m.message})"})
        return advance(check, status, m).model_copy(update={"next_at": next_at})

    async def _look(self, check: Check, evaluate: Callable[[Check], Awaitable[Measurement]]) -> Measurement:
        try:
            return await evaluate(check)
        except ActivityError as err:
            raise_if_cancelled(err)
            # The whole interval could not be measured: one error, which the check's limits judge.
            return Measurement(check=check.name, phase=GatePhase.ERROR, query=check.query,
                               message=f"evaluation failed: {describe(err)}", at=workflow.now())

    @staticmethod
    def evaluator(activity: str, request: Callable[[Check], Any],
                  keep: Callable[[Check, JudgeLookResult], Measurement] | None = None
                  ) -> Callable[[Check], Awaitable[Measurement]]:
        """One look through ``activity``: transient errors are retried within the check's interval.

        The activity answers a ``Measurement``, or (with ``keep``) a judge's look that ``keep`` folds in.
        """

        async def evaluate(check: Check) -> Measurement:
            interval = max(check.interval, timedelta(seconds=5))
            policy = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                                 maximum_interval=max(interval / 4, timedelta(seconds=1)), maximum_attempts=0,
                                 non_retryable_error_types=NON_RETRYABLE)
            timeouts: dict[str, Any] = {"schedule_to_close_timeout": interval, "retry_policy": policy,
                                        "start_to_close_timeout": min(interval, timedelta(seconds=30))}
            if keep is None:
                measured: Measurement = await workflow.execute_activity(
                    activity, request(check), result_type=Measurement, **timeouts)
                return measured
            result: JudgeLookResult = await workflow.execute_activity(
                activity, request(check), result_type=JudgeLookResult, **timeouts)
            return keep(check, result)

        return evaluate


@dataclass
class Judges:
    """The sequential judge's checks in a run: each look folds into a ``JudgeState`` the run carries.

    The statistic runs in the ``judge.look`` activity (next to the read, so workflow code does no
    arithmetic and a replay recomputes nothing); the run keeps the returned state per check in
    ``states``, part of its state model, so one test runs across steps and continue-as-new. The
    false-rollback bound is the rollout's: split over all of its judge checks (``checks``).
    """

    engine: Acts
    states: dict[str, JudgeState]
    checks: Sequence[Check]
    variables: Callable[[], dict[str, str]]
    control_variables: Callable[[], dict[str, str] | None] = lambda: None
    step_since: Callable[[], datetime | None] = lambda: None
    """When the current weight (stage) began: success for it is judged on its own data since then."""

    def _bound(self) -> tuple[float, int]:
        """Each judge check's share of the rollout's bound, and how many checks share it."""
        rollout, n = rollout_alpha(list(self.checks))
        return alpha_per_check(rollout, n), n

    def evaluate(self, other: Callable[[Check], Awaitable[Measurement]]) -> Callable[[Check], Awaitable[Measurement]]:
        """Judge checks through the judge, every other check through ``other``."""
        look = Measuring.evaluator("judge.look", self._request, self._keep)

        async def evaluate(check: Check) -> Measurement:
            return await (other if check.judge is None else look)(check)

        return evaluate

    def _request(self, check: Check) -> JudgeLookRequest:
        alpha, n = self._bound()
        return JudgeLookRequest(check=check, variables=self.variables(), control_variables=self.control_variables(),
                                state=self._state(check), alpha=alpha, checks=n)

    def _state(self, check: Check) -> JudgeState:
        state = self.states.get(check.name, JudgeState())
        since = self.step_since()
        return state if since is None or state.step_since == since else state.model_copy(update={"step_since": since})

    def _keep(self, check: Check, result: JudgeLookResult) -> Measurement:
        self.states[check.name] = result.state
        return result.measurement

    async def conclude(self, check: Check, status: CheckStatus) -> CheckStatus:
        """The step's time is over: failed, successful, or not enough traffic (an inconclusive)."""
        alpha, n = self._bound()
        verdict: JudgeVerdict = await self.engine.act(
            "judge.finish", JudgeFinishRequest(check=check, state=self._state(check),
                                               alpha=alpha, checks=n), JudgeVerdict)
        final = verdict.status(status.measurements)
        phase = final.phase if final.phase.final else CheckPhase.INCONCLUSIVE
        return status.model_copy(update={"phase": phase, "outcome": final.outcome,
                                         "reason": f"{check.name} {phase}: {verdict.message}"})


def raise_if_cancelled(err: ActivityError) -> None:
    """A cancelled workflow cancels its activities: that is the cancellation itself, never a failed look."""
    if isinstance(err.cause, CancelledError):
        raise asyncio.CancelledError() from err


def describe(err: ActivityError) -> str:
    cause = err.cause
    return str(cause.message if isinstance(cause, ApplicationError) else (cause or err))


__all__ = ["NON_RETRYABLE", "Judges", "Measuring", "describe", "raise_if_cancelled"]
