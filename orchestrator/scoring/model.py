"""The record of one chaos experiment run: the evidence a resilience score is computed from.

A run record is written once, when the experiment's workflow ends, and is never edited
afterwards: the score is always recomputed from it, so a change of formula re-scores the
whole history and a reviewer can check every number against the evidence behind it.

Shape::

    RunRecord
     ├── identity       run_id, experiment, service ("namespace/app"), fault, workflow_id, links
     ├── timeline       started_at ≤ injected_at ≤ reverted_at ≤ ended_at, outcome
     ├── checks[]       CheckEvidence: the steady-state check, its Tolerance and its
     │                  measurements before / during / after the fault (gates' Measurement)
     ├── timings        detection_time (+ objective, optional), recovery_time (+ objective)
     ├── blast_radius   BlastRadius: allowed targets, touched targets, max count, targets seen affected
     ├── impact         CustomerImpact | None: share of requests failed / over the latency objective
     ├── detection      Detection | None: what noticed the fault first (a check's breach, the detection query)
     └── error_budget   ErrorBudget | None: SLO target and the fraction of budget burned

Fields added after the first release (impact, detection, blast_radius.affected) default to
None, so every stored record still loads and is re-scored from whatever evidence it has.

Measurements are the gates' own ``Measurement`` model, kept verbatim (query as sent,
every series, the message): the score explains itself with the same evidence the gate
decided on. Non-finite values survive storage as JSON ``NaN`` because a NaN means
"no data", which the formula treats as the worst case.
"""

from __future__ import annotations

import math
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from orchestrator.gates.model import Measurement
from orchestrator.specs.checks import Check, Threshold

__all__ = [
    "BlastRadius",
    "CheckEvidence",
    "CustomerImpact",
    "Detection",
    "ErrorBudget",
    "Measurement",
    "Outcome",
    "RunRecord",
    "Stage",
    "Tolerance",
]

ServiceName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"),
]
"""``namespace/app``: the unit a reviewer asks about and the key runs are aggregated under."""


class _Data(BaseModel):
    # Frozen because a stored run is evidence; NaN kept as NaN because it means "no data".
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class Outcome(StrEnum):
    """How the run ended.

    ``completed``: the fault ran its course and was reverted; ``breached``: the steady state
    broke beyond tolerance during the fault and the run was stopped and reverted;
    ``aborted``: an operator pressed abort; ``failed``: the orchestrator itself failed;
    ``refused``: a safety rail refused to start, so no fault was injected.
    """

    COMPLETED = "completed"
    BREACHED = "breached"
    ABORTED = "aborted"
    FAILED = "failed"
    REFUSED = "refused"


class Stage(StrEnum):
    """Where a measurement lies relative to the fault window."""

    BEFORE = "before"
    DURING = "during"
    AFTER = "after"


class Tolerance(_Data):
    """The band a steady-state metric may move in while the fault is active.

    ``baseline`` is the value the metric is expected to sit at; when omitted, the median of
    the measurements taken before the fault is used. ``min``/``max`` are the bounds beyond
    which the hypothesis is broken.
    """

    min: float | None = None
    max: float | None = None
    baseline: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Tolerance:
        if self.min is None and self.max is None:
            raise ValueError("a tolerance needs min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("tolerance min is greater than max")
        return self

    @classmethod
    def from_check(cls, check: Check, baseline: float | None = None) -> Tolerance:
        """The tolerance a threshold check states; relative checks have no absolute band."""
        if not isinstance(check.condition, Threshold):
            raise ValueError(f"check {check.name}: only threshold conditions give an absolute tolerance")
        return cls(min=check.condition.min, max=check.condition.max, baseline=baseline)


class CheckEvidence(_Data):
    """One steady-state check through the run."""

    name: str
    query: str = ""
    tolerance: Tolerance
    before: list[Measurement] = Field(default_factory=list)
    during: list[Measurement] = Field(default_factory=list)
    after: list[Measurement] = Field(default_factory=list)
    verdict: str | None = None
    """The gate's final verdict on the check for the run (e.g. ``successful``, ``failed``)."""

    def stage(self, stage: Stage) -> list[Measurement]:
        return {Stage.BEFORE: self.before, Stage.DURING: self.during, Stage.AFTER: self.after}[stage]

    def timeline(self) -> list[tuple[Stage, Measurement]]:
        """Every measurement with its stage, in time order."""
        items = [(s, m) for s in Stage for m in self.stage(s)]
        return sorted(items, key=lambda item: item[1].at)


class BlastRadius(_Data):
    """What the experiment was allowed to touch and what it did touch (object names)."""

    allowed: list[str]
    touched: list[str]
    max_targets: Annotated[int | None, Field(ge=0)] = None
    affected: list[str] | None = None
    """Targets seen affected during the run (e.g. pods not ready), touched or not; None when not measured."""

    @property
    def declared(self) -> int:
        """The radius the experiment declared: its target limit, else every allowed target."""
        return self.max_targets if self.max_targets is not None else len(set(self.allowed))

    @property
    def actual(self) -> list[str]:
        """Everything the run reached: what it touched plus what was seen affected."""
        return sorted(set(self.touched) | set(self.affected or []))

    @property
    def escaped(self) -> list[str]:
        """Touched targets that were not allowed."""
        allowed = set(self.allowed)
        return sorted({t for t in self.touched if t not in allowed})

    @property
    def contained(self) -> bool:
        within_count = self.max_targets is None or len(set(self.touched)) <= self.max_targets
        return not self.escaped and within_count


class ErrorBudget(_Data):
    """The SLO the service is held to and how much of its error budget the run spent.

    ``burned`` is a fraction of the whole budget of the SLO window (0.02 = 2 % of a 30-day
    budget), measured from injection to the end of the recovery window.
    """

    slo_target: Annotated[float, Field(gt=0, lt=1)]
    burned: Annotated[float, Field(ge=0)]

    @model_validator(mode="after")
    def _finite(self) -> ErrorBudget:
        if not math.isfinite(self.burned):
            raise ValueError("budget burned must be a finite number")
        return self


class CustomerImpact(_Data):
    """Share of requests that failed or breached the latency objective, read over the run window.

    Each share is the mean of the declared ratio query evaluated at even steps from injection to
    the end of the recovery window; ``share`` adds them (a request both slow and failed counts
    twice, so it errs on the side of more impact), capped at 1.
    """

    failed_share: Annotated[float | None, Field(ge=0)] = None
    slow_share: Annotated[float | None, Field(ge=0)] = None
    samples: Annotated[int, Field(ge=0)] = 0
    queries: dict[str, str] = Field(default_factory=dict)

    @property
    def share(self) -> float | None:
        parts = [v for v in (self.failed_share, self.slow_share) if v is not None and math.isfinite(v)]
        return min(1.0, sum(parts)) if parts else None


class Detection(_Data):
    """What noticed the fault first after injection, and when."""

    at: AwareDatetime
    source: str
    """e.g. ``check error-rate breached`` or ``detection query: ALERTS{...}``."""


class RunRecord(_Data):
    """Everything one experiment run left behind."""

    run_id: Annotated[str, Field(min_length=1)]
    experiment: Annotated[str, Field(min_length=1)]
    service: ServiceName
    fault: Annotated[str, Field(min_length=1)]
    outcome: Outcome
    started_at: AwareDatetime
    ended_at: AwareDatetime
    injected_at: AwareDatetime | None = None
    reverted_at: AwareDatetime | None = None
    checks: list[CheckEvidence] = Field(default_factory=list)
    detection_time: timedelta | None = None
    """First breach or first alert after injection; None when nothing noticed the fault."""
    detection_objective: timedelta | None = None
    """None when the experiment states no detection expectation (the sub-score then does not apply)."""
    recovery_time: timedelta | None = None
    """From revert until the steady state held again; None when it never did."""
    recovery_objective: timedelta
    blast_radius: BlastRadius
    impact: CustomerImpact | None = None
    detection: Detection | None = None
    error_budget: ErrorBudget | None = None
    workflow_id: str | None = None
    links: dict[str, str] = Field(default_factory=dict)
    """Evidence links by label (workflow history, dashboards), shown to reviewers."""
    message: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> RunRecord:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        if self.recovery_objective <= timedelta(0):
            raise ValueError("recovery_objective must be positive")
        if self.detection_objective is not None and self.detection_objective <= timedelta(0):
            raise ValueError("detection_objective must be positive")
        for name, value in (("detection_time", self.detection_time), ("recovery_time", self.recovery_time)):
            if value is not None and value < timedelta(0):
                raise ValueError(f"{name} cannot be negative")
        return self

    @property
    def namespace(self) -> str:
        return self.service.split("/", 1)[0]

    @property
    def app(self) -> str:
        return self.service.split("/", 1)[1]

    @property
    def tolerances(self) -> dict[str, Tolerance]:
        return {c.name: c.tolerance for c in self.checks}
