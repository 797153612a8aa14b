"""Input, state and status of the feature-flag ramp workflow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from orchestrator.api.common import ControlRequest, ControlResponse, ControlState, Event, StuckStep
from orchestrator.flags.base import Allocation
from orchestrator.gates.judge import JudgeState
from orchestrator.gates.model import CheckStatus
from orchestrator.specs.flags import FlagRamp, ramp_workflow_id

WORKFLOW_TYPE = "FlagRamp"


class Phase(StrEnum):
    STARTING = "starting"
    RAMPING = "ramping"
    PAUSED = "paused"
    REVERTING = "reverting"
    ROLLBACK_STUCK = "rollback-stuck"
    COMPLETED = "completed"
    REVERTED = "reverted"
    ABORTED = "aborted"
    REFUSED = "refused"
    FAILED = "failed"


FINAL_PHASES = frozenset({Phase.COMPLETED, Phase.REVERTED, Phase.ABORTED, Phase.REFUSED, Phase.FAILED})


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
    waiting_for: str | None = None
    preflight: list[str] = Field(default_factory=list)  # every rail's verdict before anything changed
    reason: str | None = None
    reason_kind: str | None = None
    not_enough_traffic: bool = False
    decisive_gate: CheckStatus | None = None
    gates: list[CheckStatus] = Field(default_factory=list)  # the current stage's verdicts
    history: list[StageRecord] = Field(default_factory=list)
    stuck: StuckStep | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runs: int = 1
    events: list[Event] = Field(default_factory=list)
    events_dropped: int = 0


class FlagRampState(BaseModel):
    """Everything a ramp knows; a new run (continue-as-new) resumes from it exactly where the last stopped."""

    status: FlagRampStatus
    controls: ControlState = Field(default_factory=ControlState)
    initial: Allocation | None = None  # what the provider served before the ramp: what a revert restores
    control_variant: str = "off"
    stage_started_at: datetime | None = None  # set while a stage runs (its percentage applied)
    stage_end: datetime | None = None  # the stage's hold end, moved by extensions
    sample_base: float | None = None
    checks: dict[str, CheckStatus] = Field(default_factory=dict)
    judges: dict[str, JudgeState] = Field(default_factory=dict)  # one sequential test per judge check


class FlagRampInput(BaseModel):
    ramp: FlagRamp
    history_limit: int | None = None
    state: FlagRampState | None = None


__all__ = [
    "FINAL_PHASES",
    "WORKFLOW_TYPE",
    "ControlRequest",
    "ControlResponse",
    "Event",
    "FlagRampInput",
    "FlagRampState",
    "FlagRampStatus",
    "Phase",
    "StageRecord",
    "ramp_workflow_id",
]
