"""Input, status and result of the canary workflow (shared by the workflow, the CLI and tests)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from orchestrator.activities.models import StableSnapshot
from orchestrator.gates.model import CheckStatus
from orchestrator.specs.canary import CanaryRollout


class CanaryInput(BaseModel):
    rollout: CanaryRollout
    image: str | None = None  # overrides spec.change.image
    # Continue as new once the history holds this many events (default: when Temporal suggests it).
    history_limit: int | None = None
    resume: CanaryResume | None = None  # set when a long rollout continues as a new run


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


class CanaryResume(BaseModel):
    """Where a rollout that continued as new picks up: the canary already exists, traffic is where it was."""

    status: CanaryStatus
    snapshot: StableSnapshot
    step: int
    step_deadline: datetime | None = None  # an interrupted pause or approval keeps its original deadline
    paused: bool = False
    step_seconds: list[tuple[str, float]] = Field(default_factory=list)


CanaryInput.model_rebuild()


class ControlRequest(BaseModel):
    reason: str = ""
    by: str = ""


class ControlResponse(BaseModel):
    accepted: bool
    message: str
