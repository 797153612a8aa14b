"""Inputs, state, status and results of the chaos workflows (shared by the workflows, activities, CLI and tests).

Pure pydantic data: workflow code imports this module.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.api.common import ControlRequest, ControlResponse, ControlState, Event, StuckStep
from orchestrator.chaos.models import BudgetReading, LedgerEntry, Plan
from orchestrator.gates.model import CheckStatus, Measurement
from orchestrator.specs.chaos import ChaosExperiment

WORKFLOW_TYPE = "ChaosExperiment"
GAMEDAY_TYPE = "GameDay"


class ChaosInput(BaseModel):
    experiment: ChaosExperiment
    source: str = ""  # the spec file, for the record
    history_limit: int | None = None
    state: ChaosState | None = None  # set when a long experiment continues as a new run


class ChaosPhase(StrEnum):
    STARTING = "starting"
    VERIFYING = "verifying-steady-state"
    INJECTING = "injecting"
    RUNNING = "fault-active"
    REVERTING = "reverting"
    REVERT_STUCK = "rollback-stuck"  # a revert keeps failing: reported, re-attempted until it lands
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
    skipped_rounds: list[str] = Field(default_factory=list)
    """Rounds of a repeated fault that injected nothing, and why (e.g. a workload's ready-pod floor)."""
    stuck: StuckStep | None = None
    paused: bool = False
    waiting_for: str | None = None
    reason_kind: str | None = None
    runs: int = 1
    events: list[Event] = Field(default_factory=list)
    events_dropped: int = 0


class ChaosState(BaseModel):
    """Everything an experiment knows; a new run (continue-as-new) resumes from it exactly where the last stopped."""

    status: ChaosStatus
    controls: ControlState = Field(default_factory=ControlState)
    plan: Plan | None = None
    stages: dict[str, StageMeasurements] = Field(default_factory=dict)
    before: dict[str, CheckStatus] = Field(default_factory=dict)
    during: dict[str, CheckStatus] = Field(default_factory=dict)
    next_round_at: datetime | None = None


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


class GameDayInput(BaseModel):
    name: str
    experiments: list[ChaosInput] = Field(min_length=1)
    pause_between_seconds: float = 0.0
    # How long the next experiment waits for the previous one's workloads to be back at their ready count.
    recovery_wait_seconds: float = 120.0


class GameDayResult(BaseModel):
    name: str
    results: list[ChaosStatus] = Field(default_factory=list)
    stopped_at: str | None = None  # the experiment whose steady state (or whose workloads) did not recover
    skipped: list[str] = Field(default_factory=list)
    skip_reasons: dict[str, str] = Field(default_factory=dict)  # experiment -> why it was skipped
    passed: bool = False
    events: list[Event] = Field(default_factory=list)


class ReadyWait(BaseModel):
    """Wait (up to ``within_seconds``) until each workload the experiment targets has ``ready`` ready pods."""

    experiment: ChaosExperiment
    ready: dict[str, int]  # "namespace/name" -> ready pods wanted
    within_seconds: float


def workflow_id(namespace: str, name: str) -> str:
    """One run of an experiment at a time: the workflow id is derived from its target namespace and name."""
    return f"chaos-{namespace}-{name}"


def memo_for(inp: ChaosInput) -> dict[str, Any]:
    """What the rails of other experiments read to find overlapping targets."""
    target = inp.experiment.spec.target
    return {"namespace": target.namespace, "selector": dict(target.selector),
            "experiment": inp.experiment.metadata.name}


ChaosInput.model_rebuild()


__all__ = [
    "FINAL_PHASES",
    "GAMEDAY_TYPE",
    "WORKFLOW_TYPE",
    "ChaosInput",
    "ChaosPhase",
    "ChaosState",
    "ChaosStatus",
    "ControlRequest",
    "ControlResponse",
    "Event",
    "GameDayInput",
    "GameDayResult",
    "PlanRequest",
    "ReadyWait",
    "RunRecordRequest",
    "StageMeasurements",
    "memo_for",
    "workflow_id",
]
