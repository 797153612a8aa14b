"""Experiments on a schedule, through Temporal Schedules.

A schedule's action starts the ordinary ``ChaosExperiment`` workflow (Temporal appends the
scheduled time to the workflow id), so a scheduled run passes the same safety rails and
reverts the same way as a run started by hand. Overlap policy is SKIP: a run still going when
the next one is due makes that next one be skipped, never queued or run concurrently.
Schedule ids are ``chaos-<namespace>-<name>``; the memo carries the target so the rails of
other experiments see scheduled runs too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.api.chaos import WORKFLOW_TYPE, ChaosInput, memo_for, workflow_id
from orchestrator.errors import RefusedError, SpecError

if TYPE_CHECKING:
    from temporalio.client import Client

__all__ = ["ScheduleInfo", "create", "delete", "list_schedules", "pause", "schedule_id", "unpause"]

PREFIX = "chaos-"


def schedule_id(inp: ChaosInput) -> str:
    return workflow_id(inp.experiment.spec.target.namespace, inp.experiment.metadata.name)


@dataclass(frozen=True)
class ScheduleInfo:
    id: str
    paused: bool
    spec: str
    next_runs: list[datetime]
    recent_runs: int
    note: str


async def create(
    client: Client,
    inp: ChaosInput,
    task_queue: str,
    *,
    cron: str | None = None,
    every: timedelta | None = None,
    note: str = "",
) -> str:
    """Create the schedule (cron expression or fixed interval); refused when it already exists."""
    from temporalio.client import (
        Schedule,
        ScheduleActionStartWorkflow,
        ScheduleAlreadyRunningError,
        ScheduleIntervalSpec,
        ScheduleOverlapPolicy,
        SchedulePolicy,
        ScheduleSpec,
        ScheduleState,
    )

    if (cron is None) == (every is None):
        raise SpecError(["<command line>:0: --cron: give exactly one of --cron or --every"])
    spec = ScheduleSpec(cron_expressions=[cron]) if cron else ScheduleSpec(
        intervals=[ScheduleIntervalSpec(every=every)] if every else [])
    sid = schedule_id(inp)
    try:
        await client.create_schedule(
            sid,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    WORKFLOW_TYPE, inp, id=sid, task_queue=task_queue, memo=memo_for(inp)),
                spec=spec,
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
                state=ScheduleState(note=note or f"chaos experiment {inp.experiment.metadata.name}"),
            ),
        )
    except ScheduleAlreadyRunningError:
        raise RefusedError(f"schedule {sid} already exists (delete it first)") from None
    except Exception as exc:
        from temporalio.service import RPCError

        if isinstance(exc, RPCError) and "cron" in str(exc).lower():
            raise SpecError([f"<command line>:0: --cron: {exc}"]) from None
        raise
    return sid


async def list_schedules(client: Client) -> list[ScheduleInfo]:
    out: list[ScheduleInfo] = []
    async for entry in await client.list_schedules():
        if not entry.id.startswith(PREFIX):
            continue
        info = entry.info
        spec = ""
        if entry.schedule is not None:
            s = entry.schedule.spec
            spec = ", ".join([*s.cron_expressions, *(_cron(c) for c in s.calendars),
                              *(f"every {i.every}" for i in s.intervals)])
        out.append(ScheduleInfo(
            id=entry.id, paused=bool(entry.schedule and entry.schedule.state.paused), spec=spec,
            next_runs=list(info.next_action_times[:3]) if info else [],
            recent_runs=len(info.recent_actions) if info else 0,
            note=(entry.schedule.state.note or "") if entry.schedule else "",
        ))
    return sorted(out, key=lambda s: s.id)


_FULL = {"minute": (0, 59), "hour": (0, 23), "day_of_month": (1, 31), "month": (1, 12), "day_of_week": (0, 6)}


def _cron(calendar: Any) -> str:
    """The server stores a cron expression as calendar ranges; show it as cron again."""

    def field(name: str) -> str:
        ranges = getattr(calendar, name)
        if not ranges:
            return "*"
        if len(ranges) == 1 and (ranges[0].start, ranges[0].end or ranges[0].start) == _FULL[name] \
                and ranges[0].step == 1:
            return "*"
        parts = []
        for r in ranges:
            end = r.end or r.start
            text = str(r.start) if end == r.start else f"{r.start}-{end}"
            parts.append(text + (f"/{r.step}" if r.step not in (0, 1) else ""))
        return ",".join(parts)

    return " ".join(field(n) for n in ("minute", "hour", "day_of_month", "month", "day_of_week"))


async def _handle_exists(client: Client, sid: str) -> None:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        await client.get_schedule_handle(sid).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RefusedError(f"no schedule {sid}") from None
        raise


async def pause(client: Client, sid: str, note: str = "paused from the CLI") -> None:
    await _handle_exists(client, sid)
    await client.get_schedule_handle(sid).pause(note=note)


async def unpause(client: Client, sid: str, note: str = "unpaused from the CLI") -> None:
    await _handle_exists(client, sid)
    await client.get_schedule_handle(sid).unpause(note=note)


async def delete(client: Client, sid: str) -> None:
    await _handle_exists(client, sid)
    await client.get_schedule_handle(sid).delete()
