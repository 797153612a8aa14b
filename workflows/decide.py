"""The decisions of a run as a pure state machine: ``decide(state, event) -> (state, commands)``.

No Temporal import, no clock, no I/O: time arrives inside events, side effects leave as commands,
and the state is one pydantic model (``ControlState``) that a hand-over carries whole. The engine
(``workflows/engine.py``) feeds it events and runs its commands; a stateful test drives it with
generated interleavings. The rules:

1. **Never promote without a decision.** ``may_promote`` holds only when the operator asked to
   promote, or when nothing is paused (by hand or for a decision) and every watched gate's latest
   verdict since the latest weight change is ``passed``: failed, undecided and unmeasured all hold.
2. **A pause is state.** A decision pause (``DecisionPause``) and its deadline are fields, so they
   survive any number of hand-overs, as does the end of the timed step under way (``step_end``,
   which fires once); a gate that is still undecided when a new run looks again
   joins the pause already pending, it never starts a new one with a later deadline. The deadline
   fires once: the pause ends and the run rolls back.
3. **Compensation always lands or is reported.** Once it starts, every undo step is pending, applied
   or stuck (reported and re-attempted); a step runs only once the steps it depends on were applied
   (capacity is never removed before its replacement serves). A cancellation during compensation is
   recorded and changes nothing else; the run ends, cancelled if asked, only when every step applied.
4. **A stop is decided once.** The first stop (gate, inconclusive, abort, cancel, ...) is the run's;
   later ones are ignored, and controls are refused once compensation began (except ``retry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from orchestrator.api.common import ControlState, DecisionPause, UndoProgress, Verdict

# ---- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Looked:
    """A watched gate's look: its verdict now."""

    gate: str
    verdict: Verdict


@dataclass(frozen=True)
class WeightChanged:
    """Traffic moved (a setWeight, a ramp stage): every watched gate must be measured again."""

    at: datetime


@dataclass(frozen=True)
class StepStarted:
    """A timed step began (or a new run resumes it: the end already set stands)."""

    end: datetime


@dataclass(frozen=True)
class StepDone:
    """The step under way ended (its time, a decision, an approval): its timer is gone."""


@dataclass(frozen=True)
class Unwatched:
    """A step ended: its gates no longer hold the promotion."""

    gates: tuple[str, ...]


@dataclass(frozen=True)
class Undecided:
    """A gate cannot decide (or failed under ``onFailure: pause``): pause with a deadline, or roll back."""

    gate: str
    reason: str
    at: datetime
    timeout: timedelta
    rollback: bool = False  # ``onInconclusive: rollback``: no pause, roll back at once
    failed: bool = False


@dataclass(frozen=True)
class Remeasured:
    """A gate resumed after a decision pause is being measured afresh (its old verdict is dropped)."""

    gate: str


@dataclass(frozen=True)
class Control:
    """An operator's control: pause, resume, promote, abort, approve or retry."""

    name: str


@dataclass(frozen=True)
class TimerFired:
    """Workflow time reached ``at`` (a pause's deadline, a stuck step's re-attempt)."""

    at: datetime


@dataclass(frozen=True)
class Stopped:
    """The algorithm stopped the run (a gate failed, an approval timed out, an activity failed)."""

    kind: str
    reason: str


@dataclass(frozen=True)
class Cancel:
    """The workflow's cancellation was requested."""


@dataclass(frozen=True)
class HandOver:
    """The history is long: the state goes to a new run as it is."""


@dataclass(frozen=True)
class CompensationStarted:
    """Undo steps in order, each with the names of the steps it depends on."""

    steps: tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class UndoApplied:
    step: str


@dataclass(frozen=True)
class UndoFailed:
    step: str
    error: str


Event = (Looked | WeightChanged | StepStarted | StepDone | Unwatched | Undecided | Remeasured | Control
         | TimerFired | Stopped | Cancel | HandOver | CompensationStarted | UndoApplied | UndoFailed)

# ---- commands -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollBack:
    """Stop the run and compensate."""

    kind: str
    reason: str


@dataclass(frozen=True)
class StepOver:
    """The timed step's end came: the step ends (once)."""


@dataclass(frozen=True)
class NotifyPaused:
    reason: str


@dataclass(frozen=True)
class RunUndo:
    step: str


@dataclass(frozen=True)
class ReportStuck:
    step: str
    error: str


@dataclass(frozen=True)
class Continue:
    """Hand the state to a new run."""


@dataclass(frozen=True)
class End:
    """Every undo step applied: the run ends (cancelled when a cancellation was requested)."""

    cancelled: bool


Command = RollBack | StepOver | NotifyPaused | RunUndo | ReportStuck | Continue | End


# ---- the function -----------------------------------------------------------------------------------


def decide(state: ControlState, event: Event) -> tuple[ControlState, list[Command]]:
    """The new state and the commands ``event`` leads to; ``state`` itself is never changed."""
    s = state.model_copy(deep=True)
    out: list[Command] = []
    match event:
        case Looked(gate, verdict):
            s.verdicts[gate] = verdict
        case WeightChanged(at):
            s.weight_changed_at = at
            s.verdicts = dict.fromkeys(s.verdicts, Verdict.UNMEASURED)
        case StepStarted(end):
            if s.step_end is None:
                s.step_end = end
        case StepDone():
            s.step_end = None
        case Unwatched(gates):
            s.verdicts = {g: v for g, v in s.verdicts.items() if g not in gates}
        case Undecided():
            _undecided(s, event, out)
        case Remeasured(gate):
            s.remeasure = [g for g in s.remeasure if g != gate]
        case Control(name):
            _control(s, name, out)
        case TimerFired(at) if s.compensating:
            out.extend(RunUndo(u.name) for u in s.undo if u.state == "stuck" and u.name in runnable(s))
        case TimerFired(at):
            if s.step_end is not None and at >= s.step_end and s.stop is None:
                s.step_end = None
                out.append(StepOver())
            decision = s.decision
            if decision is not None and at >= decision.deadline and s.stop is None:
                s.decision, s.paused = None, False
                _stop(s, "gate" if decision.failed else "inconclusive",
                      f"{decision.reason}; nobody decided within {decision.deadline - decision.since}", out)
        case Stopped(kind, reason):
            _stop(s, kind, reason, out)
        case Cancel():
            s.cancel_requested = True
            if not s.compensating:
                _stop(s, "cancelled", "the workflow was cancelled", out)
        case HandOver():
            if s.stop is None and not s.compensating:
                out.append(Continue())
        case CompensationStarted(steps):
            s.compensating = True
            s.decision, s.paused = None, False
            s.undo = [UndoProgress(name=name, after=list(after)) for name, after in steps]
            out.extend(RunUndo(step) for step in runnable(s))
            _maybe_end(s, out)
        case UndoApplied(step):
            u = _undo(s, step)
            u.state, u.error, u.attempts = "applied", "", u.attempts + 1
            # The steps this one held back run now; the others are queued already or re-attempted later.
            out.extend(RunUndo(name) for name in runnable(s) if step in _undo(s, name).after)
            _maybe_end(s, out)
        case UndoFailed(step, error):
            u = _undo(s, step)
            u.state, u.error, u.attempts = "stuck", error, u.attempts + 1
            out.append(ReportStuck(step, error))
    return s, out


def _undecided(s: ControlState, event: Undecided, out: list[Command]) -> None:
    if s.stop is not None or s.compensating:
        return
    if (s.decision is not None and s.decision.gate == event.gate) or event.gate in s.remeasure:
        return  # the same gate met again by a new run: the pause pending (or its resume) goes on
    if event.rollback:
        _stop(s, "gate" if event.failed else "inconclusive", event.reason, out)
        return
    if s.decision is None:
        s.decision = DecisionPause(gate=event.gate, reason=event.reason, since=event.at,
                                   deadline=event.at + event.timeout, failed=event.failed)
        out.append(NotifyPaused(event.reason))
    s.paused = True
    if event.gate in s.verdicts:
        s.verdicts[event.gate] = Verdict.FAILED if event.failed else Verdict.UNDECIDED


def _control(s: ControlState, name: str, out: list[Command]) -> None:
    if name == "retry":
        s.retries += 1
        out.extend(RunUndo(u.name) for u in s.undo if u.state == "stuck" and u.name in runnable(s))
        return
    if s.stop is not None or s.compensating:
        return
    if name == "pause":
        s.paused = True
    elif name == "resume":
        # A decision pause ends: its gate is measured afresh, so it holds the promotion until then.
        if s.decision is not None:
            if s.decision.gate in s.verdicts:
                s.verdicts[s.decision.gate] = Verdict.UNMEASURED
            s.remeasure = [*s.remeasure, s.decision.gate]
        s.paused, s.decision = False, None
    elif name == "promote":
        s.promote, s.paused, s.decision = True, False, None
    elif name == "approve":
        s.approved = True
    elif name == "abort":
        _stop(s, "abort", "aborted", out)


def _stop(s: ControlState, kind: str, reason: str, out: list[Command]) -> None:
    if s.stop is None and not s.compensating:
        s.stop = kind
        s.decision, s.paused = None, False  # nothing is waited for any more: the run is stopping
        out.append(RollBack(kind, reason))


def _undo(s: ControlState, name: str) -> UndoProgress:
    return next(u for u in s.undo if u.name == name)


def _maybe_end(s: ControlState, out: list[Command]) -> None:
    if s.compensating and compensation_done(s):
        out.append(End(cancelled=s.cancel_requested))


# ---- what the interpreter asks ---------------------------------------------------------------------


def may_promote(s: ControlState) -> bool:
    """Rule 1: an explicit promote, or nothing paused and every watched gate passed since the weight changed."""
    if s.stop is not None or s.compensating:
        return False
    if s.promote:
        return True
    return not s.paused and s.decision is None and all(v is Verdict.PASSED for v in s.verdicts.values())


def runnable(s: ControlState) -> list[str]:
    """The undo steps not yet applied whose dependencies were applied, in order."""
    applied = {u.name for u in s.undo if u.state == "applied"}
    return [u.name for u in s.undo if u.state != "applied" and all(d in applied for d in u.after)]


def compensation_done(s: ControlState) -> bool:
    return all(u.state == "applied" for u in s.undo)


def stuck(s: ControlState) -> list[UndoProgress]:
    return [u for u in s.undo if u.state == "stuck"]


def verdict_of(phase: str, last_phase: str | None, waiting: bool) -> Verdict:
    """A check's status as a watched verdict: its final phase, else its last look's phase."""
    if phase == "failed":
        return Verdict.FAILED
    if phase in ("inconclusive", "error"):
        return Verdict.UNDECIDED
    if phase == "successful":
        return Verdict.PASSED
    if waiting or last_phase is None:
        return Verdict.UNMEASURED
    return {"successful": Verdict.PASSED, "failed": Verdict.FAILED}.get(last_phase, Verdict.UNDECIDED)


__all__ = [
    "Cancel",
    "Command",
    "CompensationStarted",
    "Continue",
    "Control",
    "End",
    "Event",
    "HandOver",
    "Looked",
    "NotifyPaused",
    "Remeasured",
    "ReportStuck",
    "RollBack",
    "RunUndo",
    "Stopped",
    "TimerFired",
    "Undecided",
    "UndoApplied",
    "UndoFailed",
    "Unwatched",
    "Verdict",
    "WeightChanged",
    "compensation_done",
    "decide",
    "may_promote",
    "runnable",
    "stuck",
    "verdict_of",
]
