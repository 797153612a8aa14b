"""What every workflow of the project shares with its callers: controls, events, the stuck report.

Pure pydantic data (no I/O): workflow code, activities and the CLI all import it.

``ControlState`` is the whole state of a run's decisions (``workflows/decide.py`` is the function
that changes it): every pause and its deadline, the pending decision, each watched gate's latest
verdict, the compensation's progress and a cancellation request are fields here, and a run's state
model carries it whole across continue-as-new, so a hand-over loses nothing by construction.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

EVENTS_KEPT = 50
"""A status keeps its last events only; the full log is in the worker's logs and the workflow history."""


class Event(BaseModel):
    at: datetime
    message: str


class ControlRequest(BaseModel):
    reason: str = ""
    by: str = ""
    off: bool = False  # with abort, from a kill switch: undo to "off", not to what was there before


class ControlResponse(BaseModel):
    accepted: bool
    message: str


class Verdict(StrEnum):
    """A watched gate's latest verdict, from its last look with data since the latest weight change."""

    PASSED = "passed"
    FAILED = "failed"
    UNDECIDED = "undecided"  # inconclusive, error, not enough traffic, a judge still collecting
    UNMEASURED = "unmeasured"  # no look with data since the weight changed


class DecisionPause(BaseModel):
    """A gate that could not decide (or failed under ``onFailure: pause``): paused until a human decides."""

    gate: str
    reason: str
    since: datetime
    deadline: datetime  # the run rolls back at this instant unless resumed, promoted or aborted first
    failed: bool = False  # a failed gate held by ``onFailure: pause``, not an undecided one


class UndoProgress(BaseModel):
    """One compensation step: pending until it is applied; stuck (and reported) while it keeps failing."""

    name: str
    after: list[str] = Field(default_factory=list)
    state: Literal["pending", "applied", "stuck"] = "pending"
    error: str = ""
    attempts: int = 0


class ControlState(BaseModel):
    """What the controls asked for and every decision under way: a run's whole decision state."""

    paused: bool = False  # by hand or for a decision; nothing new starts until resumed
    promote: bool = False
    approved: bool = False
    retries: int = 0  # how many times ``retry`` was asked for (a stuck undo re-attempts at once)
    decision: DecisionPause | None = None
    remeasure: list[str] = Field(default_factory=list)  # gates resumed after a decision pause, not re-measured yet
    verdicts: dict[str, Verdict] = Field(default_factory=dict)  # the watched gates (background, current step)
    weight_changed_at: datetime | None = None
    step_end: datetime | None = None  # when the timed step under way ends (pause, approval timeout, analysis)
    stop: str | None = None  # the kind of the stop decided (gate, inconclusive, abort, cancelled, ...)
    cancel_requested: bool = False
    compensating: bool = False
    undo: list[UndoProgress] = Field(default_factory=list)


class StuckStep(BaseModel):
    """An undo step (rollback, revert) that keeps failing: reported, and re-attempted until it lands."""

    step: str
    error: str
    since: datetime
    attempts: int = 1
    next_attempt_at: datetime | None = None


__all__ = [
    "EVENTS_KEPT",
    "ControlRequest",
    "ControlResponse",
    "ControlState",
    "DecisionPause",
    "Event",
    "StuckStep",
    "UndoProgress",
    "Verdict",
]
