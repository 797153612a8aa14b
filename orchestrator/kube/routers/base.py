"""The traffic-router plug-in contract: what a router is given, and the three things it must do.

A router moves a share of traffic between the stable and the canary version and can undo that. It knows
nothing about steps, gates or rollbacks; the workflow decides the weights. ``RouteTarget`` is a pydantic
model because it travels through Temporal as an activity argument.

Implementations are small classes constructed with a kubernetes ``ApiClient``; ``routers/__init__.py`` maps
the spec's ``traffic.type`` onto them.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import KubeError
from orchestrator.specs.canary import Routing

__all__ = ["RouteTarget", "TrafficRouter", "check_weight", "routing_of"]


class RouteTarget(BaseModel):
    """Which workloads a router shifts traffic between."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    rollout: str
    stable: str  # the stable Deployment
    canary: str  # the canary Deployment
    total_replicas: int = Field(ge=1)  # the stable Deployment's replica count before the rollout
    routing: Routing


class TrafficRouter(Protocol):
    type: str

    def set_weight(self, target: RouteTarget, weight: int) -> None:
        """Send ``weight`` percent (0..100) of traffic to the canary. Idempotent."""
        ...

    def verify_weight(self, target: RouteTarget, weight: int) -> bool | None:
        """Whether the cluster now routes ``weight`` percent to the canary; None when it cannot tell."""
        ...

    def reset(self, target: RouteTarget) -> None:
        """All traffic back to stable, and remove whatever the router created. Idempotent."""
        ...


R = TypeVar("R")


def routing_of(target: RouteTarget, kind: type[R]) -> R:
    """The target's routing, checked to be the type this router handles."""
    if not isinstance(target.routing, kind):
        raise KubeError(
            f"router for {kind.__name__} was given routing of type {target.routing.type!r}",
            retryable=False,
        )
    return target.routing


def check_weight(weight: int) -> int:
    if not 0 <= weight <= 100:
        raise ValueError(f"weight must be within 0..100, got {weight}")
    return weight
