"""Input, state and status of the canary workflow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.api.common import ControlRequest, ControlResponse, ControlState, Event, StuckStep
from orchestrator.api.requests import StableSnapshot
from orchestrator.gates.judge import JudgeState
from orchestrator.gates.model import CheckStatus
from orchestrator.specs.canary import CanaryRollout

WORKFLOW_TYPE = "CanaryRollout"


def workflow_id(namespace: str, deployment: str, cluster: str | None = None) -> str:
    """One rollout per target: the workflow id is derived from the target (and its cluster, in a fleet release)."""
    return f"canary-{cluster}-{namespace}-{deployment}" if cluster else f"canary-{namespace}-{deployment}"


class Phase(StrEnum):
    STARTING = "starting"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    WAITING_APPROVAL = "waiting-approval"
    PROMOTING = "promoting"
    ROLLING_BACK = "rolling-back"
    ROLLBACK_STUCK = "rollback-stuck"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled-back"
    ABORTED = "aborted"
    REFUSED = "refused"
    FAILED = "failed"


FINAL_PHASES = frozenset({Phase.PROMOTED, Phase.ROLLED_BACK, Phase.ABORTED, Phase.REFUSED, Phase.FAILED})


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
    """The weight last requested."""
    effective_weight: float = 0.0
    """The share of traffic the canary really gets (replica routing rounds to whole pods)."""
    weight_detail: str = ""
    weight_verified: bool | None = None
    paused: bool = False
    waiting_for: str | None = None
    preflight: list[str] = Field(default_factory=list)  # every rail's verdict before anything changed
    gates: list[CheckStatus] = Field(default_factory=list)
    reason: str | None = None
    reason_kind: str | None = None  # gate | inconclusive | abort | approval-timeout | cancelled | error | refused
    decisive_gate: CheckStatus | None = None
    stuck: StuckStep | None = None
    started_at: datetime | None = None
    rollback_started_at: datetime | None = None
    weight_zero_at: datetime | None = None
    canary_traffic_at: datetime | None = None
    finished_at: datetime | None = None
    runs: int = 1  # how many workflow runs this rollout has taken (continue-as-new)
    # The stable template the promotion replaced: what a fleet release restores to undo this cluster.
    previous_template: dict[str, Any] | None = None
    events: list[Event] = Field(default_factory=list)
    events_dropped: int = 0


class CanaryState(BaseModel):
    """Everything a rollout knows; a new run (continue-as-new) starts from it exactly where the last stopped."""

    status: CanaryStatus
    snapshot: StableSnapshot | None = None
    controls: ControlState = Field(default_factory=ControlState)
    step_started_at: datetime | None = None  # set while a step runs: its pause, approval and analysis deadlines
    checks: dict[str, CheckStatus] = Field(default_factory=dict)  # the running analysis step's checks
    background: dict[str, CheckStatus] = Field(default_factory=dict)  # per rollout, not per run
    decided: dict[str, CheckStatus] = Field(default_factory=dict)  # verdicts of finished analysis steps
    judges: dict[str, JudgeState] = Field(default_factory=dict)  # one sequential test per judge check
    stable_modified: bool = False
    step_seconds: list[tuple[str, float]] = Field(default_factory=list)


class CanaryInput(BaseModel):
    rollout: CanaryRollout
    image: str | None = None  # overrides spec.change.image
    # Continue as new once the history holds this many events (default: when Temporal suggests it).
    history_limit: int | None = None
    # The longest one watch of a step's looks runs before it hands over to the next (default: 10 minutes).
    watch_seconds: float | None = None
    state: CanaryState | None = None  # set when a long rollout continues as a new run


__all__ = [
    "FINAL_PHASES",
    "WORKFLOW_TYPE",
    "CanaryInput",
    "CanaryState",
    "CanaryStatus",
    "ControlRequest",
    "ControlResponse",
    "Event",
    "Phase",
    "workflow_id",
]
