"""Input, status and result of the canary workflow (shared by the workflow, the CLI and tests)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from orchestrator.gates.model import CheckStatus
from orchestrator.specs.canary import CanaryRollout


class CanaryInput(BaseModel):
    rollout: CanaryRollout
    image: str | None = None  # overrides spec.change.image


class Phase(StrEnum):
    STARTING = "starting"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    WAITING_APPROVAL = "waiting-approval"
    PROMOTING = "promoting"
    ROLLING_BACK = "rolling-back"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    FAILED = "failed"


FINAL_PHASES = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.FAILED})


class Event(BaseModel):
    at: datetime
    message: str


class CanaryStatus(BaseModel):
    name: str
    namespace: str
    deployment: str
    image: str
    phase: Phase
    step: int  # index of the current step, len(steps) once all are done
    steps: int
    step_description: str = ""
    weight: int = 0
    paused: bool = False
    waiting_for: str | None = None
    gates: list[CheckStatus] = Field(default_factory=list)
    reason: str | None = None
    decisive_gate: CheckStatus | None = None
    started_at: datetime | None = None
    rollback_started_at: datetime | None = None
    weight_zero_at: datetime | None = None
    canary_traffic_at: datetime | None = None
    finished_at: datetime | None = None
    events: list[Event] = Field(default_factory=list)


class ControlRequest(BaseModel):
    reason: str = ""
    by: str = ""


class ControlResponse(BaseModel):
    accepted: bool
    message: str
