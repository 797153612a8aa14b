"""Inputs and results of the canary activities.

Pure pydantic models with no client imports, because workflow code imports them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from orchestrator.specs.canary import Routing
from orchestrator.specs.checks import Check


class DeploymentRef(BaseModel):
    namespace: str
    name: str
    container: str | None = None


class StableSnapshot(BaseModel):
    """The stable Deployment as it was before the rollout touched anything."""

    namespace: str
    name: str
    replicas: int
    template: dict[str, Any]
    container: str
    image: str
    source: dict[str, Any] = Field(default_factory=dict)  # the Kubernetes layer's full snapshot


class CopyRequest(BaseModel):
    """Create or converge ``<app>-canary`` / ``<app>-baseline`` from the stable snapshot."""

    snapshot: StableSnapshot
    name: str
    role: Literal["canary", "baseline"]
    rollout: str
    replicas: int
    image: str | None = None
    env: dict[str, str] = Field(default_factory=dict)


class WaitRequest(BaseModel):
    namespace: str
    name: str
    deadline_seconds: float


class ScaleRequest(BaseModel):
    namespace: str
    name: str
    replicas: int


class RouteRequest(BaseModel):
    namespace: str
    rollout: str
    stable: str
    canary: str
    total_replicas: int
    routing: Routing
    weight: int = 0
    replicas: int | None = None  # setWeight: {replicas: N} (replicas routing): exactly N canary pods
    verify_seconds: float = 60.0  # also the deadline for new pods to become ready


class WeightResult(BaseModel):
    """What a router did with a requested weight, as far as it can tell."""

    requested: int
    effective: float  # percent of traffic the canary really gets (replica routing rounds to whole pods)
    verified: bool | None = None  # None: the router cannot confirm (no controller reports status)
    detail: str = ""


class TemplateUpdate(BaseModel):
    namespace: str
    name: str
    container: str
    image: str | None
    env: dict[str, str] = Field(default_factory=dict)


class TemplateRestore(BaseModel):
    namespace: str
    name: str
    template: dict[str, Any]


class EvaluateRequest(BaseModel):
    check: Check
    variables: dict[str, str]


class NotifyRequest(BaseModel):
    kind: Literal["canary", "flag_ramp", "chaos"]
    name: str
    outcome: str
    target: str | None = None
    reason: str | None = None
    reason_kind: str | None = None  # gate | abort | approval-timeout | error | cancelled (the metrics label)
    workflow_id: str | None = None
    step_seconds: list[tuple[str, float]] = Field(default_factory=list)  # (step kind, duration) for the metrics
    # Rollback decision -> traffic back on the stable, for orchestrator_time_to_rollback_seconds.
    time_to_rollback_seconds: float | None = None


class RollbackStuckRequest(BaseModel):
    """A compensation step keeps failing (``stuck``) or has finally succeeded (``stuck=False``).

    Sent to ``notify.rollback_stuck`` at every re-attempt while stuck: the metric's series expires
    unless renewed, which keeps it right with several workers.
    """

    kind: Literal["canary", "flag_ramp", "chaos"]
    workflow_id: str
    name: str
    step: str
    error: str = ""
    stuck: bool = True
