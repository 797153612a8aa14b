"""A timed step's looks as one ``watch`` activity: history that grows with steps, not with looks.

The workflow side of ``orchestrator/activities/watch.py``. ``watch`` runs one watch after another
for a step (or for the background checks) until the step is over, carrying the state each returns;
the step's counters and judge states are the run's (``states``/``judges``, fields of its state
model), so a hand-over between runs loses nothing either. The rules:

* **Controls act at once.** Abort, a stop from another part of the run, and (for a step) promote
  cancel the watch without waiting for it (``TRY_CANCEL``): a watch only reads, nothing is half-done.
* **A verdict is returned, never a cancellation.** A check that failed or cannot decide comes back
  from the watch and goes to ``on_verdict`` (a rollback, or a decision pause: ``Engine.no_decision``).
* **The decision core hears the background checks.** Each background check's verdict is reported as
  ``Looked`` when its latest counted look came after the latest weight change; a weight change
  restarts the background watch (from the state it last returned: ``watch_fold`` rule 5 makes that
  lose successes only) so that the first fresh look lets a promotion go on.
* **Hand-overs happen between watches.** A long history hands over (``ContinueAsNew``) only once a
  watch returned, so the state carried is the watch's latest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from orchestrator.api.common import ControlState
    from orchestrator.gates.judge import JudgeState, alpha_per_check, rollout_alpha
    from orchestrator.gates.model import CheckPhase, CheckStatus
    from orchestrator.gates.verdict import start
    from orchestrator.gates.watch_fold import (
        End,
        WatchRequest,
        WatchResult,
        WatchSpec,
        WatchState,
        heartbeat_timeout,
        watch_queue,
    )
    from orchestrator.specs.checks import Check
    from workflows import decide as core
    from workflows.core_looks import NON_RETRYABLE, raise_if_cancelled

WATCH = "watch.checks"
HAND_OVER = timedelta(minutes=10)
"""A watch returns after this long at most: the next one starts with its state (a few events per hand-over)."""
WATCH_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                          maximum_interval=timedelta(seconds=10), maximum_attempts=0,
                          non_retryable_error_types=NON_RETRYABLE)


class Watcher(Protocol):
    """What ``watch`` needs of the engine."""

    controls: ControlState

    @property
    def stop(self) -> object | None: ...

    def raise_if_stopped(self) -> None: ...

    def apply(self, event: core.Event) -> list[core.Command]: ...

    async def wait(self, until: datetime | None, *, also: Callable[[], bool] = ...,
                   wake_on_promote: bool = True) -> bool: ...


async def watch(
    engine: Watcher,
    checks: Sequence[Check],
    states: dict[str, CheckStatus],
    *,
    judges: dict[str, JudgeState],
    rollout_checks: Sequence[Check],
    variables: Callable[[], dict[str, str]],
    started: datetime,
    until: datetime | None,
    data_since: Callable[[], datetime | None],
    on_verdict: Callable[[Check, CheckStatus], Awaitable[CheckStatus]],
    publish: Callable[[], None] = lambda: None,
    background: bool = False,
    hold: bool = False,
    max_seconds: float | None = None,
) -> None:
    """Watch ``checks`` until the step is over (a background watch: until cancelled or stopped).

    ``states`` and ``judges`` (keyed by check name) are read and written in place; ``on_verdict``
    is told of every final verdict that is not a success, as in ``Measuring.measure``. ``max_seconds``
    bounds one watch (default ``HAND_OVER``).
    """
    longest = timedelta(seconds=max_seconds) if max_seconds else HAND_OVER
    for check in checks:
        states.setdefault(check.name, start(check))
    for check in checks:
        status = states[check.name]
        if status.phase.final and status.phase is not CheckPhase.SUCCESSFUL and not engine.controls.promote:
            states[check.name] = await on_verdict(check, status)  # a verdict a new run has not acted on yet
    rollout, n = rollout_alpha(list(rollout_checks))
    fresh: dict[str, datetime] = {}
    while True:
        engine.raise_if_stopped()
        if not background and engine.controls.promote:
            return
        epoch = engine.controls.weight_changed_at
        spec = WatchSpec(checks=list(checks), started=started, until=until, data_since=data_since(),
                         background=background, hold=hold, fresh_after=epoch if background else None,
                         judge_alpha=alpha_per_check(rollout, n), judge_checks=n)
        state = WatchState(checks={c.name: states[c.name] for c in checks},
                           judges={c.name: judges[c.name] for c in checks if c.name in judges}, fresh=fresh)
        handle = workflow.start_activity(
            WATCH, WatchRequest(spec=spec, state=state, variables=variables(), step_since=epoch,
                                max_seconds=longest.total_seconds()),
            result_type=WatchResult, task_queue=watch_queue(workflow.info().task_queue),
            start_to_close_timeout=longest + timedelta(minutes=2), heartbeat_timeout=heartbeat_timeout(list(checks)),
            cancellation_type=ActivityCancellationType.TRY_CANCEL, retry_policy=WATCH_RETRY)
        try:
            await workflow.wait_condition(_woken(engine, handle, epoch, background))
        except BaseException:
            _drop(handle)
            raise
        if not handle.done():
            _drop(handle)  # a stop, a promote or a weight change: acted on at the top of the loop
            continue
        try:
            result = await handle
        except ActivityError as err:
            raise_if_cancelled(err)
            raise
        for check in checks:
            states[check.name] = result.state.checks.get(check.name, states[check.name])
        judges.update(result.state.judges)
        fresh = dict(result.state.fresh)
        if background:
            _tell_core(engine, checks, states, fresh)
        publish()
        for check in checks:
            status = states[check.name]
            if status.phase.final and status.phase is not CheckPhase.SUCCESSFUL:
                states[check.name] = await on_verdict(check, status)
                if background and states[check.name] is not status:
                    fresh.pop(check.name, None)  # measured afresh: its old looks are not its verdict
        publish()
        if not background and result.end in (End.PASSED, End.ENDED):
            return
        # Between watches is where a long history hands over: ``wait`` raises ContinueAsNew then.
        await engine.wait(None, also=lambda: True)


def _drop(handle: workflow.ActivityHandle[WatchResult]) -> None:
    """Cancel a watch without waiting for it (``TRY_CANCEL``): its outcome is of no interest any more."""
    handle.add_done_callback(lambda h: h.cancelled() or h.exception())
    handle.cancel()


def _woken(engine: Watcher, handle: workflow.ActivityHandle[WatchResult], epoch: datetime | None,
           background: bool) -> Callable[[], bool]:
    def woken() -> bool:
        if handle.done() or engine.stop is not None:
            return True
        if background:
            return engine.controls.weight_changed_at != epoch
        return engine.controls.promote

    return woken


def _tell_core(engine: Watcher, checks: Sequence[Check], states: dict[str, CheckStatus],
               fresh: dict[str, datetime]) -> None:
    changed = engine.controls.weight_changed_at
    for check in checks:
        looked = fresh.get(check.name)
        if looked is None or (changed is not None and looked < changed):
            continue  # not looked at since the weight changed: the core's verdict stays "unmeasured"
        status = states[check.name]
        engine.apply(core.Looked(check.name, core.verdict_of(
            status.phase, status.last.phase if status.last else None, False)))


__all__ = ["HAND_OVER", "WATCH", "watch"]
