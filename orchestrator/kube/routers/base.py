"""The traffic-router plug-in contract: what a router is given, and the three things it must do.

A router moves a share of traffic between the stable and the canary version and can undo that. It knows
nothing about steps, gates or rollbacks; the workflow decides the weights. ``RouteTarget`` is a pydantic
model because it travels through Temporal as an activity argument.

Two rules every router keeps:

* **never remove serving capacity before its replacement is ready**: a router that scales grows the side
  that gains, waits (``Progress.wait_until``: a deadline, a heartbeat while waiting, a clear
  ``PodsNotReadyError`` when it passes) until the new pods are ready, and only then shrinks the other side;
* **report what is in effect, not what was asked**: ``verify_weight`` answers a ``WeightReport`` with the
  effective share of traffic (4 replicas cannot run 5 %), whether it is confirmed (``None``: nothing in the
  cluster can confirm it, e.g. no controller reports route status) and a one-line detail for the status.

Implementations are small classes constructed with a kubernetes ``ApiClient``; ``routers/__init__.py`` maps
the spec's ``traffic.type`` onto them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.errors import KubeError
from orchestrator.specs.canary import Routing

__all__ = [
    "PodsNotReadyError",
    "Progress",
    "RouteTarget",
    "TrafficRouter",
    "WeightReport",
    "check_weight",
    "routing_of",
]


class PodsNotReadyError(KubeError):
    """A side did not get its pods ready within the deadline; nothing was taken away from the other side."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass
class Progress:
    """How a router waits: until a deadline, calling ``beat`` (an activity heartbeat) at every look."""

    deadline_seconds: float = 60.0
    beat: Callable[[str], None] = field(default=lambda detail: None)
    poll_seconds: float = 0.25

    def wait_until(self, what: str, probe: Callable[[], tuple[bool, str]]) -> None:
        """Poll ``probe`` (done?, detail) until it is done; ``PodsNotReadyError`` after the deadline."""
        deadline = time.monotonic() + self.deadline_seconds
        while True:
            done, detail = probe()
            self.beat(f"waiting for {what}: {detail}")
            if done:
                return
            if time.monotonic() > deadline:
                raise PodsNotReadyError(
                    f"{what}: not ready within {self.deadline_seconds:.0f}s ({detail}); "
                    "the other side was left as it was"
                )
            time.sleep(self.poll_seconds)


class WeightReport(BaseModel):
    """What a router can tell about the weight in effect."""

    effective: float  # percent of traffic the canary actually receives
    verified: bool | None  # None: nothing in the cluster can confirm it
    detail: str


class RouteTarget(BaseModel):
    """Which workloads a router shifts traffic between."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    rollout: str
    stable: str  # the stable Deployment
    canary: str  # the canary Deployment
    total_replicas: int = Field(ge=0)  # the stable Deployment's replica count before the rollout
    routing: Routing


class TrafficRouter(Protocol):
    type: str

    def set_weight(
        self, target: RouteTarget, weight: int, progress: Progress, replicas: int | None = None
    ) -> None:
        """Send ``weight`` percent (0..100) of traffic to the canary (or, replicas routing only, run exactly
        ``replicas`` canary pods). Idempotent; never shrinks a side before the growing one is ready."""
        ...

    def verify_weight(self, target: RouteTarget, weight: int, replicas: int | None = None) -> WeightReport:
        """The weight in effect, and whether it is the one asked for (None: the cluster cannot tell)."""
        ...

    def reset(self, target: RouteTarget, progress: Progress) -> None:
        """All traffic back to stable, and remove whatever the router created. Idempotent; the stable has
        its full capacity ready before the canary loses any."""
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
