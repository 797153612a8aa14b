"""Inputs, status and results of the chaos workflows (shared by the workflows, activities, CLI and tests).

Pure pydantic data: workflow code imports this module.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from orchestrator.chaos.models import BudgetReading, LedgerEntry, Plan
from orchestrator.gates.model import CheckStatus, Measurement
from orchestrator.specs.chaos import ChaosExperiment

WORKFLOW_TYPE = "ChaosExperiment"
GAMEDAY_TYPE = "GameDay"


class ChaosInput(BaseModel):
    experiment: ChaosExperiment
    source: str = ""  # the spec file, for the record


class ChaosPhase(StrEnum):
    STARTING = "starting"
    VERIFYING = "verifying-steady-state"
    INJECTING = "injecting"
    RUNNING = "fault-active"
    REVERTING = "reverting"
    RECOVERING = "recovering"
    # final
    COMPLETED = "completed"  # fault ran its course, steady state held and recovered
    BREACHED = "breached"  # steady state broke beyond tolerance: stopped early and reverted
    NOT_RECOVERED = "not-recovered"  # reverted, but the steady state did not come back in time
    ABORTED = "aborted"
    REFUSED = "refused"  # a safety rail or an unsteady system: nothing was injected
    FAILED = "failed"


FINAL_PHASES = frozenset({
    ChaosPhase.COMPLETED, ChaosPhase.BREACHED, ChaosPhase.NOT_RECOVERED,
    ChaosPhase.ABORTED, ChaosPhase.REFUSED, ChaosPhase.FAILED,
})


class Event(BaseModel):
    at: datetime
    message: str


class StageMeasurements(BaseModel):
    """Every measurement of one check, by stage: the evidence the score is computed from."""

    check: str
    before: list[Measurement] = Field(default_factory=list)
    during: list[Measurement] = Field(default_factory=list)
    after: list[Measurement] = Field(default_factory=list)


class ChaosStatus(BaseModel):
    name: str
    namespace: str
    workflow_id: str = ""
    run: str = ""
    fault: str
    phase: ChaosPhase = ChaosPhase.STARTING
    reason: str | None = None
    plan: list[str] = Field(default_factory=list)
    ledger: list[LedgerEntry] = Field(default_factory=list)
    """Every fault recorded before it was applied; what ``finally`` reverts."""
    reverted: list[str] = Field(default_factory=list)
    touched: list[str] = Field(default_factory=list)
    candidates: list[str] = Field(default_factory=list)
    rounds: int = 0
    checks: list[CheckStatus] = Field(default_factory=list)
    recovered: bool | None = None
    started_at: datetime | None = None
    injected_at: datetime | None = None
    first_breach_at: datetime | None = None
    reverted_at: datetime | None = None
    recovered_at: datetime | None = None
    finished_at: datetime | None = None
    budget_before: BudgetReading | None = None
    """The error budget as the safety rail read it before injection (None when none is declared)."""
    recorded: bool = False
    events: list[Event] = Field(default_factory=list)


class PlanRequest(BaseModel):
    experiment: ChaosExperiment
    run: str
    workflow_id: str | None = None
    round: int = 0
    now: datetime
    rails: bool = True  # the Prometheus and Temporal rails (skipped for the later rounds of a repeated kill)


class RunRecordRequest(BaseModel):
    experiment: ChaosExperiment
    status: ChaosStatus
    measurements: list[StageMeasurements]
    plan: Plan | None = None


class ControlRequest(BaseModel):
    reason: str = ""
    by: str = ""


class ControlResponse(BaseModel):
    accepted: bool
    message: str


class GameDayInput(BaseModel):
    name: str
    experiments: list[ChaosInput] = Field(min_length=1)
    pause_between_seconds: float = 0.0


class GameDayResult(BaseModel):
    name: str
    results: list[ChaosStatus] = Field(default_factory=list)
    stopped_at: str | None = None  # the experiment whose steady state did not recover
    skipped: list[str] = Field(default_factory=list)
    passed: bool = False
