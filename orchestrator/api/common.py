"""What every workflow of the project shares with its callers: controls, events, the stuck report.

Pure pydantic data (no I/O): workflow code, activities and the CLI all import it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

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


class ControlState(BaseModel):
    """What the controls asked for; carried across continue-as-new with the rest of a run's state."""

    paused: bool = False
    promote: bool = False
    approved: bool = False
    retries: int = 0  # how many times ``retry`` was asked for (a stuck undo re-attempts at once)


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
    "Event",
    "StuckStep",
]
