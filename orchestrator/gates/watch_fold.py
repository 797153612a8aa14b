"""The fold a watch applies to each batch of looks: a step's whole check state in, its new state out.

Pure (no clock, no I/O): the ``watch`` activity calls it once per batch, and the same function is
what tests drive. It is built from the existing pure code only: ``advance``/``finish``/``start`` for
the counters (``gates/verdict.py``), the judge's ``judge_finish`` for a judge still open at the end.
A judge's look arrives already folded by ``judge_update`` (the read and the statistic belong together),
so this fold keeps its ``JudgeState`` and counts its measurement like any other. The rules:

1. **The state is bounded.** Per check: a ``CheckStatus`` (counters and the last ``RECENT`` looks),
   a ``JudgeState`` (bounded by the judge) and the time of its latest counted look. It is what the
   watch heartbeats and returns, so a crash or a hand-over resumes with every counter.
2. **Waiting for data is not a look.** A series that has not appeared yet, before ``waitForData``
   after the subject began receiving traffic, is noted (``last``) but not counted, and does not make
   the check fresh; after that, or once data was seen, the check's ``noData`` applies.
3. **Looks keep their interval.** The next look is due one interval after this one was due, or one
   interval from now when this one ran late: looks are skipped, never bunched.
4. **Background checks never finish.** Their success is not final (a judge keeps judging at every
   later weight); a failure, an inconclusive or an error verdict is.
5. **When the watch returns** (``End``): a check decided other than successful (``decided``); every
   step check succeeded and the step does not hold (``passed``); the step's time ended — the open
   checks are decided then, with ``finish`` or the judge's ``judge_finish`` (``ended``). A background
   watch also returns when a look changed a counter that a restart could not recompute — a failure,
   an inconclusive or an error look (``changed``): a watch restarted from the state it last returned
   loses successes only, never evidence against the release; and once every check has been looked at
   since ``fresh_after`` (the latest weight change: ``fresh``), so a promotion waits for one fresh
   look, not for the next hand-over.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.gates.judge import JudgeLookResult, JudgeState, judge_finish
from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement, Phase
from orchestrator.gates.verdict import advance, finish, start
from orchestrator.specs.checks import Check

WATCH_THROTTLE = timedelta(seconds=20)
"""Heartbeats of a watch reach the server at most this often. Each one is a write on the server, so this
is what a watch costs Temporal; it also bounds what a crash repeats (the looks since the last heartbeat
that arrived) and how long a cancelled watch reads on (harmless: the workflow does not wait for it)."""

STATE_BYTES = 256_000
"""Above this (as JSON), ``bounded`` drops the kept looks' raw series: heartbeats and results stay small."""


class End(StrEnum):
    """Why a watch returned; ``handover`` is the activity's own (its bounded duration)."""

    DECIDED = "decided"
    PASSED = "passed"
    ENDED = "ended"
    CHANGED = "changed"
    FRESH = "fresh"
    HANDOVER = "handover"


class WatchSpec(BaseModel):
    """What the step's watch looks at and until when: the input side, never heartbeated."""

    model_config = ConfigDict(frozen=True)

    checks: list[Check]
    started: datetime
    """When the step began: a check's first look is due ``initialDelay`` after it."""
    until: datetime | None = None
    data_since: datetime | None = None
    """When the subject began receiving traffic (``waitForData`` counts from it); None: ``started``."""
    background: bool = False
    hold: bool = False
    """The step lasts until ``until`` even when every check has decided (a ramp stage's hold)."""
    fresh_after: datetime | None = None
    judge_alpha: float = 0.01
    judge_checks: int = 1


class WatchState(BaseModel):
    """A step's whole check state: what the watch heartbeats and returns (rule 1)."""

    checks: dict[str, CheckStatus] = Field(default_factory=dict)
    judges: dict[str, JudgeState] = Field(default_factory=dict)
    fresh: dict[str, datetime] = Field(default_factory=dict)
    """Each check's latest counted look (a look with data, or past waiting for it)."""
    looks: int = 0


Look = Measurement | JudgeLookResult


class Batch(BaseModel):
    """One round of looks taken together at ``at`` (``scheduled``: when each was due), or the step's end."""

    at: datetime
    looks: dict[str, Look] = Field(default_factory=dict)
    scheduled: dict[str, datetime] = Field(default_factory=dict)
    ended: bool = False


def fold(spec: WatchSpec, state: WatchState, batch: Batch) -> tuple[WatchState, End | None]:
    """The state after ``batch``, and why the watch returns now (None: it watches on)."""
    checks = {c.name: c for c in spec.checks}
    statuses = {c.name: state.checks.get(c.name) or start(c) for c in spec.checks}
    judges, fresh = dict(state.judges), dict(state.fresh)
    was_fresh = _all_fresh(spec, fresh)
    changed = False
    for name, look in batch.looks.items():
        check = checks[name]
        before = statuses[name]
        if spec.background and before.phase is CheckPhase.SUCCESSFUL:
            before = before.model_copy(update={"phase": CheckPhase.RUNNING})
        if isinstance(look, JudgeLookResult):
            judges[name] = look.state
            measurement = look.measurement
        else:
            measurement = look
        after = _fold_one(spec, check, before, measurement, batch.scheduled.get(name, batch.at), batch.at)
        statuses[name] = after
        if after.measurements != before.measurements:
            fresh[name] = batch.at
            counted_against = check.judge is None and measurement.phase is not Phase.SUCCESSFUL
            changed = changed or counted_against or _verdict_class(before) != _verdict_class(after)
    if batch.ended:
        for name, status in statuses.items():
            if not status.phase.final:
                statuses[name] = _conclude(spec, checks[name], status, judges.get(name, JudgeState()))
    new = WatchState(checks=statuses, judges=judges, fresh=fresh, looks=state.looks + len(batch.looks))
    return new, _end(spec, new, batch, changed=changed, was_fresh=was_fresh)


def due(spec: WatchSpec, state: WatchState) -> dict[str, datetime]:
    """When each open check's next look is due (rule 3); a decided check is not looked at again."""
    out: dict[str, datetime] = {}
    for check in spec.checks:
        status = state.checks.get(check.name)
        if status is not None and status.phase.final and not (
                spec.background and status.phase is CheckPhase.SUCCESSFUL):
            continue
        out[check.name] = (status.next_at if status is not None and status.next_at is not None
                           else spec.started + check.initial_delay)
    return out


def judge_state(spec: WatchSpec, state: WatchState, check: Check, step_since: datetime | None) -> JudgeState:
    """The judge's state for its next look, told when the current weight began (success is per weight)."""
    current = state.judges.get(check.name, JudgeState())
    if step_since is None or current.step_since == step_since:
        return current
    return current.model_copy(update={"step_since": step_since})


def bounded(state: WatchState, limit: int = STATE_BYTES) -> WatchState:
    """``state`` within ``limit`` bytes of JSON: past it, the kept looks lose their raw series (counters stay)."""
    if len(state.model_dump_json()) <= limit:
        return state

    def slim(m: Measurement) -> Measurement:
        return m.model_copy(update={"values": m.values[:3], "control_values": m.control_values[:3]})

    checks = {n: s.model_copy(update={"recent": [slim(m) for m in s.recent[-3:]],
                                      "last": slim(s.last) if s.last is not None else None})
              for n, s in state.checks.items()}
    return state.model_copy(update={"checks": checks})


def _fold_one(spec: WatchSpec, check: Check, status: CheckStatus, m: Measurement, scheduled: datetime,
              now: datetime) -> CheckStatus:
    next_at = scheduled + check.interval
    if next_at <= now:
        next_at = now + check.interval
    waiting_until = (spec.data_since or spec.started) + check.wait_for_data
    if m.no_data and m.phase is not Phase.SUCCESSFUL and not status.data_seen and now < waiting_until:
        return status.model_copy(update={
            "last": m, "next_at": next_at,
            "reason": f"{check.name} running: waiting for data until {waiting_until:%H:%M:%S} ({m.message})"})
    return advance(check, status, m).model_copy(update={"next_at": next_at})


def _conclude(spec: WatchSpec, check: Check, status: CheckStatus, judge: JudgeState) -> CheckStatus:
    if check.judge is None:
        return finish(check, status)
    verdict = judge_finish(check, judge, alpha=spec.judge_alpha, checks=spec.judge_checks)
    final = verdict.status(status.measurements)
    phase = final.phase if final.phase.final else CheckPhase.INCONCLUSIVE
    return status.model_copy(update={"phase": phase, "outcome": final.outcome,
                                     "reason": f"{check.name} {phase}: {verdict.message}"})


def _verdict_class(status: CheckStatus) -> str:
    """What the decision core would make of the check: its final phase, else its last counted look's."""
    if status.phase.final:
        return status.phase.value
    return status.last.phase.value if status.last is not None else ""


def _all_fresh(spec: WatchSpec, fresh: Mapping[str, datetime]) -> bool:
    after = spec.fresh_after
    return after is not None and all(c.name in fresh and fresh[c.name] >= after for c in spec.checks)


def _end(spec: WatchSpec, state: WatchState, batch: Batch, *, changed: bool, was_fresh: bool) -> End | None:
    statuses = state.checks.values()
    if any(s.phase.final and s.phase is not CheckPhase.SUCCESSFUL for s in statuses):
        return End.DECIDED
    if spec.background:
        if changed:
            return End.CHANGED
        if not was_fresh and _all_fresh(spec, state.fresh):
            return End.FRESH
        return None
    if batch.ended:
        return End.ENDED
    if not spec.hold and all(s.phase is CheckPhase.SUCCESSFUL for s in statuses):
        return End.PASSED
    return None


class WatchRequest(BaseModel):
    """One watch: what to look at (``spec``), the state to resume from, how long before it hands over."""

    spec: WatchSpec
    state: WatchState = Field(default_factory=WatchState)
    variables: dict[str, str]
    step_since: datetime | None = None
    """When the current weight began: a judge's success is established from its own data since then."""
    max_seconds: float = 600.0
    beat_seconds: float = 20.0
    """How often an idle watch heartbeats (cancellation reaches it through the heartbeat's answer)."""


class WatchResult(BaseModel):
    state: WatchState
    end: End


def watch_queue(task_queue: str) -> str:
    """The watches' own task queue beside a workflow's: their slots are never an undo activity's."""
    return f"{task_queue}-watch"


def heartbeat_timeout(checks: list[Check]) -> timedelta:
    """Long enough that heartbeats cost the server little, short enough that a crash costs little."""
    shortest = min((c.interval for c in checks), default=timedelta(seconds=10))
    return max(timedelta(seconds=45), 3 * shortest)


__all__ = [
    "WATCH_THROTTLE",
    "Batch",
    "End",
    "Look",
    "WatchRequest",
    "WatchResult",
    "WatchSpec",
    "WatchState",
    "bounded",
    "due",
    "fold",
    "heartbeat_timeout",
    "judge_state",
    "watch_queue",
]
