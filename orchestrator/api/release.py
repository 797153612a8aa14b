"""Input, state and status of the Release workflow, and the requests of its activities.

Pure pydantic data: the workflow, its pure decision core (``workflows/release_decide.py``), the
activities and the CLI import it. ``ReleaseState`` is the release's whole state; a hand-over
(continue-as-new, only between waves) carries it whole, and ``status`` is computed from it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from orchestrator.api.common import ControlRequest, ControlResponse, Event
from orchestrator.specs.release import Release

WORKFLOW_TYPE = "Release"


def workflow_id(name: str) -> str:
    """One release per name: a second ``release run`` of the same name is refused while one runs."""
    return f"release-{name}"


class ClusterPhase(StrEnum):
    PENDING = "pending"
    NO_WORKER = "no-worker"  # its queue has no poller: reported, then onFailure after noWorkerTimeout
    RUNNING = "running"  # its child canary runs
    PROMOTED = "promoted"
    BAKING = "baking"
    BAKED = "baked"
    FAILED = "failed"  # its canary did not promote (rolled back by itself) or its bake failed
    CANCELLED = "cancelled"  # its canary was stopped by the release's stop (it rolled back by itself)
    UNDOING = "undoing"
    UNDO_STUCK = "undo-stuck"
    UNDONE = "undone"


class ReleasePhase(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    WAITING_APPROVAL = "waiting-approval"
    BAKING = "baking"
    STOPPING = "stopping"  # a stop was decided: running canaries are being cancelled (each rolls back)
    UNDOING = "undoing"
    UNDO_STUCK = "undo-stuck"
    COMPLETED = "completed"
    STOPPED = "stopped"  # a cluster failed; the release stopped (and undid what onFailure says)
    ABORTED = "aborted"
    REFUSED = "refused"


FINAL_PHASES = frozenset({ReleasePhase.COMPLETED, ReleasePhase.STOPPED, ReleasePhase.ABORTED, ReleasePhase.REFUSED})


class ClusterState(BaseModel):
    name: str
    wave: int
    queue: str
    phase: ClusterPhase = ClusterPhase.PENDING
    verdict: str = ""  # the canary's or the bake's reason, as it was given
    check: str | None = None  # the check that decided, when one did
    workflow_id: str = ""
    # The stable template the canary replaced, recorded at its promotion: what undo restores.
    previous_template: dict[str, Any] | None = None
    namespace: str = ""
    deployment: str = ""
    cancel_requested: bool = False
    no_worker_since: datetime | None = None
    bake_until: datetime | None = None
    undo_error: str = ""
    undo_attempts: int = 0
    undo_retry_at: datetime | None = None


class StopDecision(BaseModel):
    kind: str  # cluster | bake | no-worker | approval-timeout | abort | cancelled | refused
    reason: str
    cluster: str | None = None
    check: str | None = None


class ReleaseState(BaseModel):
    """Everything the release knows; the decision core changes it, a hand-over carries it whole."""

    name: str
    clusters: list[ClusterState]
    waves: int
    wave: int = 0
    stage: str = "start"  # start | approval | canaries | bake | done (per wave), then stopping | undoing | ended
    paused: bool = False
    approved: bool = False
    approval_deadline: datetime | None = None
    stop: StopDecision | None = None
    cancel_requested: bool = False
    promoted_order: list[str] = Field(default_factory=list)
    undo: list[str] = Field(default_factory=list)  # clusters to restore, in order (decided once no child runs)
    undo_decided: bool = False
    hand_over_wanted: bool = False
    phase: ReleasePhase = ReleasePhase.RUNNING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    runs: int = 1
    events: list[Event] = Field(default_factory=list)

    def cluster(self, name: str) -> ClusterState:
        return next(c for c in self.clusters if c.name == name)

    def in_wave(self, wave: int) -> list[ClusterState]:
        return [c for c in self.clusters if c.wave == wave]


class ReleaseInput(BaseModel):
    release: Release  # its canary inlined by the client: the worker never reads a path
    # Hand over (continue-as-new, between waves only) once the history holds this many events
    # (default: when Temporal suggests it).
    history_limit: int | None = None
    state: ReleaseState | None = None  # set when a long release continues as a new run
    controls: list[str] = Field(default_factory=list)  # controls received but not yet applied at a hand-over


class ClusterQueuesRequest(BaseModel):
    names: list[str]


class ClusterQueues(BaseModel):
    queues: dict[str, str]  # the known names, with their queues
    unknown: list[str]
    source: str


class PingRequest(BaseModel):
    cluster: str


class UndoRequest(BaseModel):
    """Restore ``template`` on the Deployment with surge only (``maxUnavailable: 0``), then wait until it serves."""

    namespace: str
    name: str
    template: dict[str, Any]
    deadline_seconds: float = 600.0


class UndoResult(BaseModel):
    changed: bool  # False: the Deployment already ran that template (an earlier attempt landed)
    ready: int
    replicas: int


__all__ = [
    "FINAL_PHASES",
    "WORKFLOW_TYPE",
    "ClusterPhase",
    "ClusterQueues",
    "ClusterQueuesRequest",
    "ClusterState",
    "ControlRequest",
    "ControlResponse",
    "PingRequest",
    "ReleaseInput",
    "ReleasePhase",
    "ReleaseState",
    "StopDecision",
    "UndoRequest",
    "UndoResult",
    "workflow_id",
]
