"""Input, status and result of the flag-ramp workflow (shared by the workflow, the CLI and tests)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from orchestrator.gates.model import CheckStatus
from orchestrator.specs.flags import FlagRamp
from workflows.canary_models import ControlRequest, ControlResponse, Event


class FlagRampInput(BaseModel):
    ramp: FlagRamp


class Phase(StrEnum):
    STARTING = "starting"
    RAMPING = "ramping"
    PAUSED = "paused"
    REVERTING = "reverting"
    COMPLETED = "completed"
    REVERTED = "reverted"
    ABORTED = "aborted"
    FAILED = "failed"


FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.REVERTED, Phase.ABORTED, Phase.FAILED})


class StageRecord(BaseModel):
    """One stage as it happened: when its percentage was applied, what traffic and gates it saw."""

    index: int
    percent: float
    applied_at: datetime | None = None
    ended_at: datetime | None = None
    extensions: int = 0
    sample: float | None = None  # traffic counted by minimumSample during the stage
    outcome: str = "running"  # running | passed | failed | not-enough-traffic | promoted | aborted
    gates: list[CheckStatus] = Field(default_factory=list)


class FlagRampStatus(BaseModel):
    name: str
    workflow_id: str
    provider: str
    flag: str
    variant: str
    control: str | None
    phase: Phase
    stage: int  # index of the current stage, len(stages) once all are done
    stages: int
    percent: float = 0.0  # what the provider serves now, as far as the ramp knows
    initial_percent: float | None = None
    applied: list[float] = Field(default_factory=list)  # every percentage written, in order
    paused: bool = False
    reason: str | None = None
    not_enough_traffic: bool = False
    decisive_gate: CheckStatus | None = None
    gates: list[CheckStatus] = Field(default_factory=list)  # the current stage's verdicts
    history: list[StageRecord] = Field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    events: list[Event] = Field(default_factory=list)


__all__ = [
    "FINAL_PHASES",
    "ControlRequest",
    "ControlResponse",
    "Event",
    "FlagRampInput",
    "FlagRampStatus",
    "Phase",
    "StageRecord",
]
