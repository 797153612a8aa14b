"""What a gate evaluation produces: samples, measurements and the verdict over them.

These models travel through Temporal (``pydantic_data_converter``), so they are plain
pydantic data and this module imports nothing that does I/O: workflow code imports it.

Shape (after argo-rollouts' AnalysisRun)::

    Sample          one series of a query result: labels + value (NaN kept as NaN)
    Measurement     one evaluation of one check: phase, values, the queries as sent, a message
    CheckStatus     the verdict over a check's measurements so far (see ``verdict.decide``)

Non-finite floats are serialised as the JSON constants ``NaN`` / ``Infinity`` rather
than ``null``: a 0/0 error ratio must survive the trip through the workflow history as
NaN, because it means "no data" and is explained as such.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")


class Phase(StrEnum):
    """Outcome of one measurement."""

    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


class CheckPhase(StrEnum):
    """State of a check over all of its measurements; every phase but ``running`` is final."""

    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"

    @property
    def final(self) -> bool:
        return self is not CheckPhase.RUNNING


class Sample(_Data):
    """One series of an instant query result."""

    labels: dict[str, str] = Field(default_factory=dict)
    value: float


class Measurement(_Data):
    """One evaluation of one check, with everything needed to explain or replay it."""

    check: str
    phase: Phase
    value: float | None = None
    """The value judged: the single series, or the worst one when several were returned."""
    control_value: float | None = None
    """The control track's value for relative conditions."""
    values: list[Sample] = Field(default_factory=list)
    control_values: list[Sample] = Field(default_factory=list)
    query: str
    """The query exactly as sent (or the template, when rendering it failed)."""
    control_query: str | None = None
    message: str
    at: datetime
    outcome: str | None = None
    """Machine-readable outcome when a judge decided: "failed", "successful", "not enough traffic" or "running"."""
    no_data: bool = False
    """The query returned nothing usable (empty, NaN, no control): ``message`` says which; the phase is
    what the check's ``noData`` policy made of it. The engine uses it to tell *waiting for data* (a
    series that has not appeared yet) from *no data* (the policy applies)."""


class CheckStatus(_Data):
    """The verdict on one check: where it stands, the counts behind it and why."""

    check: str
    phase: CheckPhase
    measurements: int = 0
    successes: int = 0
    failures: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last: Measurement | None = None
    recent: list[Measurement] = Field(default_factory=list)
    """The last few measurements (bounded: this status travels through workflow history and
    continue-as-new, whose payloads have a size limit); the counters above cover all of them."""
    data_seen: bool = False
    """A measurement has returned data at least once (see ``Measurement.no_data``)."""
    next_at: datetime | None = None
    """When the next look is due (workflow time); None before the first look is planned."""
    reason: str
    outcome: str | None = None
    """As ``Measurement.outcome``: tells "not enough traffic" apart from other inconclusive verdicts."""


CheckVerdict = CheckStatus
"""Alias: a final ``CheckStatus`` is the check's verdict."""
