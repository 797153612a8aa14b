"""The janitor's Temporal Schedule: created or brought up to date by every worker on start.

One schedule, ``orchestrator-chaos-janitor``, starts the ``ChaosJanitor`` workflow every
``ORCHESTRATOR_JANITOR_INTERVAL`` seconds (60 by default; 0 removes the schedule), with overlap
policy SKIP: a sweep still running when the next is due makes that next one be skipped. Every worker
calls ``ensure`` on start; creating an existing schedule updates it instead, so the last worker to
start sets the interval and task queue, and many workers never make many schedules. The id does not
start with ``chaos-`` so experiment schedule listings leave it out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.chaos.models import JanitorResult
from orchestrator.errors import SpecError

if TYPE_CHECKING:
    from temporalio.client import Client, Schedule

__all__ = ["SCHEDULE_ID", "JanitorRun", "JanitorScheduleInfo", "describe", "ensure", "interval_from_env"]

SCHEDULE_ID = "orchestrator-chaos-janitor"
DEFAULT_INTERVAL = timedelta(minutes=1)


def interval_from_env(env: Mapping[str, str] | None = None) -> timedelta | None:
    """``ORCHESTRATOR_JANITOR_INTERVAL`` in seconds (60 when unset); None when it is 0 (no schedule)."""
    raw = (os.environ if env is None else env).get("ORCHESTRATOR_JANITOR_INTERVAL", "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        seconds = float(raw)
    except ValueError:
        raise SpecError([f"<environment>:0: ORCHESTRATOR_JANITOR_INTERVAL: {raw!r} is not a number of seconds"]) \
            from None
    if seconds < 0:
        raise SpecError(["<environment>:0: ORCHESTRATOR_JANITOR_INTERVAL: must be 0 (off) or more seconds"])
    return timedelta(seconds=seconds) if seconds else None


def _schedule(task_queue: str, every: timedelta) -> Schedule:
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleState,
    )

    from workflows.janitor import JANITOR_TYPE

    return Schedule(
        action=ScheduleActionStartWorkflow(JANITOR_TYPE, id=SCHEDULE_ID, task_queue=task_queue),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note="reverts chaos faults whose expiry passed, workflow or not"),
    )


async def ensure(client: Client, task_queue: str, every: timedelta | None) -> str:
    """Create the schedule, or update it to ``every`` and ``task_queue``; delete it when ``every`` is None."""
    from temporalio.client import ScheduleAlreadyRunningError, ScheduleUpdate, ScheduleUpdateInput
    from temporalio.service import RPCError, RPCStatusCode

    handle = client.get_schedule_handle(SCHEDULE_ID)
    if every is None:
        try:
            await handle.delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        return "the janitor schedule is off (ORCHESTRATOR_JANITOR_INTERVAL=0)"
    wanted = _schedule(task_queue, every)
    try:
        await client.create_schedule(SCHEDULE_ID, wanted)
        return f"created the janitor schedule {SCHEDULE_ID}: every {every}"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # Keep a pause an operator set; replace what this worker's settings decide.
        wanted.state.paused = current.description.schedule.state.paused
        return ScheduleUpdate(schedule=wanted)

    await handle.update(update)
    return f"updated the janitor schedule {SCHEDULE_ID}: every {every}"


@dataclass(frozen=True)
class JanitorRun:
    started_at: datetime
    workflow_id: str
    result: JanitorResult | None  # None while running, or when the run failed
    status: str


@dataclass(frozen=True)
class JanitorScheduleInfo:
    every: str
    paused: bool
    next_run: datetime | None
    runs: list[JanitorRun]


async def describe(client: Client, last: int = 3) -> JanitorScheduleInfo | None:
    """The schedule and its most recent runs with their results; None when there is no schedule."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError, RPCStatusCode

    try:
        desc = await client.get_schedule_handle(SCHEDULE_ID).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    runs: list[JanitorRun] = []
    for action in list(desc.info.recent_actions)[-last:]:
        wid = getattr(action.action, "workflow_id", "")
        run_id = getattr(action.action, "first_execution_run_id", None)
        handle = client.get_workflow_handle(wid, run_id=run_id, result_type=JanitorResult)
        result: JanitorResult | None = None
        try:
            wf = await handle.describe()
            status = wf.status.name.lower() if wf.status else "unknown"
            if wf.status == WorkflowExecutionStatus.COMPLETED:
                result = await handle.result()
        except RPCError:
            status = "gone"
        runs.append(JanitorRun(started_at=action.started_at, workflow_id=wid, result=result, status=status))
    intervals = desc.schedule.spec.intervals
    return JanitorScheduleInfo(
        every=", ".join(f"every {i.every}" for i in intervals) or "-",
        paused=desc.schedule.state.paused,
        next_run=desc.info.next_action_times[0] if desc.info.next_action_times else None,
        runs=runs,
    )
