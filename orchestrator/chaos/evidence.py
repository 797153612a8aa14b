"""What recording a finished chaos run needs to know, as plain data owned by ``orchestrator.chaos``.

``record.build_record`` turns a ``RunEvidence`` into the scoring's ``RunRecord``. The workflow's
own request and status models carry the same fields under the same names, so the activity
hands its request over with ``RunEvidence.of(request)`` (read by attribute, extra fields
ignored) and neither ``orchestrator.chaos`` nor ``orchestrator.scoring`` imports the workflow
package: the workflow models may move without touching recording.

``window`` is what the save activity read from Prometheus over the run window (customer
impact, the detection query, the pods seen affected); None for a run saved without it.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.chaos.models import BudgetReading, Plan
from orchestrator.gates.model import Measurement
from orchestrator.scoring.model import CustomerImpact, Detection
from orchestrator.specs.chaos import ChaosExperiment

__all__ = ["CheckVerdict", "RunEvidence", "RunStatusEvidence", "StageEvidence", "WindowEvidence"]


class _Read(BaseModel):
    # Read from the workflow's models by attribute; what recording does not use is ignored.
    model_config = ConfigDict(from_attributes=True, extra="ignore")


class StageEvidence(_Read):
    """Every measurement of one check, by stage."""

    check: str
    before: list[Measurement] = Field(default_factory=list)
    during: list[Measurement] = Field(default_factory=list)
    after: list[Measurement] = Field(default_factory=list)


class CheckVerdict(_Read):
    check: str
    phase: str


class RunStatusEvidence(_Read):
    """The run's final status: phase (its string value), timeline, targets and verdicts."""

    name: str
    workflow_id: str = ""
    run: str = ""
    fault: str = ""
    phase: str
    reason: str | None = None
    touched: list[str] = Field(default_factory=list)
    candidates: list[str] = Field(default_factory=list)
    checks: list[CheckVerdict] = Field(default_factory=list)
    recovered: bool | None = None
    started_at: datetime | None = None
    injected_at: datetime | None = None
    first_breach_at: datetime | None = None
    reverted_at: datetime | None = None
    recovered_at: datetime | None = None
    finished_at: datetime | None = None
    budget_before: BudgetReading | None = None


class WindowEvidence(_Read):
    """Read from Prometheus over the run window when the run is saved (``scoring.collect``)."""

    impact: CustomerImpact | None = None
    detection: Detection | None = None
    affected: list[str] | None = None
    """Targets seen affected (the affected query's series) during the run; None when not declared or no data."""
    notes: list[str] = Field(default_factory=list)


class RunEvidence(_Read):
    experiment: ChaosExperiment
    status: RunStatusEvidence
    measurements: list[StageEvidence] = Field(default_factory=list)
    plan: Plan | None = None
    window: WindowEvidence | None = None

    @classmethod
    def of(cls, source: object, window: WindowEvidence | None = None) -> RunEvidence:
        """From any object with these attributes (the workflow's record request)."""
        evidence = source if isinstance(source, RunEvidence) else cls.model_validate(source, from_attributes=True)
        return evidence.model_copy(update={"window": window}) if window is not None else evidence
