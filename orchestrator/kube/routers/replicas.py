"""Traffic by replica ratio: no mesh, one Service selecting stable and canary pods alike.

The share of requests a pod receives behind a plain Service is roughly its share of ready endpoints, so the
canary weight is set by scaling: of the ``N`` stable replicas, ``c = round(N*w/100)`` (at least 1 when
``w > 0``) run as canary and ``max(N - c, 1)`` stay stable.

The stable Deployment is never scaled to 0 here, not even at 100 %: until the workflow has promoted the new
template into the stable Deployment, the stable pods are the only ones known to work, and a rollback that
must first scale stable back up from nothing is a rollback with an outage. So "100 %" means ``N`` canary
pods beside one stable pod, ``N/(N+1)`` of the traffic; promotion makes it real.
"""

from __future__ import annotations

from kubernetes import client as k8s

from orchestrator.errors import NotFoundError
from orchestrator.kube.routers.base import RouteTarget, check_weight
from orchestrator.kube.workloads import Workloads

__all__ = ["ReplicasRouter", "replica_split"]


def replica_split(total: int, weight: int) -> tuple[int, int]:
    """``(stable, canary)`` replica counts for ``weight`` percent of ``total`` replicas."""
    check_weight(weight)
    if weight == 0:
        return total, 0
    # Half-up, not Python's banker's rounding: 50 % of 3 is 2 canary pods, every time.
    canary = max(1, (total * weight + 50) // 100)
    return max(total - canary, 1), canary


class ReplicasRouter:
    type = "replicas"

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.workloads = Workloads(api_client)

    def set_weight(self, target: RouteTarget, weight: int) -> None:
        stable, canary = replica_split(target.total_replicas, weight)
        # Grow before shrinking so the total serving capacity never dips below the target's.
        if canary > 0:
            self.workloads.scale(target.namespace, target.canary, canary)
            self.workloads.scale(target.namespace, target.stable, stable)
        else:
            self.workloads.scale(target.namespace, target.stable, stable)
            self._scale_canary_down(target)

    def verify_weight(self, target: RouteTarget, weight: int) -> bool | None:
        """Both Deployments ask for, and have ready, the replica counts of ``weight``."""
        stable, canary = replica_split(target.total_replicas, weight)
        s = self.workloads.availability(target.namespace, target.stable)
        try:
            c = self.workloads.availability(target.namespace, target.canary)
        except NotFoundError:
            return canary == 0 and s.desired == stable and s.ready == stable
        return s.desired == stable and s.ready == stable and c.desired == canary and c.ready == canary

    def reset(self, target: RouteTarget) -> None:
        self.workloads.scale(target.namespace, target.stable, target.total_replicas)
        self._scale_canary_down(target)

    def _scale_canary_down(self, target: RouteTarget) -> None:
        try:
            self.workloads.scale(target.namespace, target.canary, 0)
        except NotFoundError:
            pass  # no canary Deployment: nothing receives canary traffic
