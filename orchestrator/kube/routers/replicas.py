"""Traffic by replica ratio: no mesh, one Service selecting stable and canary pods alike.

The share of requests a pod receives behind a plain Service is roughly its share of ready endpoints, so the
canary weight is set by scaling (the arithmetic is ``orchestrator.specs.weights``, shared with ``validate``):
of the ``N`` stable replicas, ``c = round(N*w/100)`` (at least 1 when ``w > 0``) run as canary and
``max(N - c, 1)`` stay stable. ``setWeight: {replicas: c}`` names ``c`` directly.

The stable Deployment is never scaled to 0 here, not even at 100 %: until the workflow has promoted the new
template into the stable Deployment, the stable pods are the only ones known to work, and a rollback that
must first scale stable back up from nothing is a rollback with an outage. So "100 %" means ``N`` canary
pods beside one stable pod, ``N/(N+1)`` of the traffic; promotion makes it real. The weight reported is
always the effective one, computed from the pods that are ready.

Capacity is never removed before its replacement serves: every change first scales up the side that
gains, waits until its new pods are ready (``Progress``: deadline and heartbeats), and only then scales
down the side that loses. ``reset`` is the same move towards "all stable": the stable back to its full
replica count and ready, then the canary to 0. If the growing side never gets ready, the wait fails with
``PodsNotReadyError`` and the shrinking side keeps every pod it had.
"""

from __future__ import annotations

from kubernetes import client as k8s

from orchestrator.errors import NotFoundError
from orchestrator.kube.routers.base import Progress, RouteTarget, WeightReport, check_weight
from orchestrator.kube.workloads import Availability, Workloads
from orchestrator.specs.weights import effective_weight, pods_split, replica_split

__all__ = ["ReplicasRouter", "replica_split"]


def _plan(target: RouteTarget, weight: int, replicas: int | None) -> tuple[int, int]:
    if replicas is not None:
        return pods_split(target.total_replicas, replicas)
    return replica_split(target.total_replicas, check_weight(weight))


def _ready_for(state: Availability, wanted: int) -> bool:
    # The controller has seen the new count and that many pods serve. Capacity is what counts, not the
    # template: a rollback must not wait for a stable that is rolling to a broken template to finish.
    return state.observed and state.desired == wanted and state.available >= wanted


class ReplicasRouter:
    type = "replicas"

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.workloads = Workloads(api_client)

    def set_weight(
        self, target: RouteTarget, weight: int, progress: Progress, replicas: int | None = None
    ) -> None:
        stable, canary = _plan(target, weight, replicas)
        self._move(target, stable, canary, progress)

    def reset(self, target: RouteTarget, progress: Progress) -> None:
        self._move(target, target.total_replicas, 0, progress)

    def verify_weight(self, target: RouteTarget, weight: int, replicas: int | None = None) -> WeightReport:
        """Both Deployments ask for, and have ready, the planned replica counts; the weight from ready pods."""
        stable, canary = _plan(target, weight, replicas)
        s = self.workloads.availability(target.namespace, target.stable)
        c = self._canary_state(target)
        c_ready = c.ready if c is not None else 0
        effective = effective_weight(s.ready, c_ready)
        # A canary at 0 counts once its Deployment reports no ready pod left, not when 0 is merely asked.
        canary_done = (
            c is None or (c.observed and c.desired == 0 and c.ready == 0)
            if canary == 0
            else c is not None and _ready_for(c, canary)
        )
        verified = _ready_for(s, stable) and canary_done
        detail = (
            f"{c_ready} canary and {s.ready} stable pods ready: {effective:.3g}% of traffic to the canary"
            f" (planned {canary} + {stable})"
        )
        return WeightReport(effective=effective, verified=verified, detail=detail)

    # -- moving pods, capacity first ---------------------------------------------------------------------

    def _canary_state(self, target: RouteTarget) -> Availability | None:
        try:
            return self.workloads.availability(target.namespace, target.canary)
        except NotFoundError:
            return None

    def _move(self, target: RouteTarget, stable: int, canary: int, progress: Progress) -> None:
        ns = target.namespace
        s = self.workloads.availability(ns, target.stable)
        c = self._canary_state(target)
        if c is None and canary > 0:
            raise NotFoundError(f"deployment {ns}/{target.canary} not found: create the canary before weighting it")
        sides = [(target.stable, s.desired, stable)]
        if c is not None:
            sides.append((target.canary, c.desired, canary))
        growing = [(name, want) for name, have, want in sides if want > have]
        shrinking = [(name, want) for name, have, want in sides if want < have]
        for name, want in growing:
            self.workloads.scale(ns, name, want)
        for name, want in growing:
            self._wait_ready(ns, name, want, progress)
        # A side that is already at its count may still be rolling out: wait for it too before shrinking
        # the other, or a promotion's fresh stable pods would be counted before they serve.
        for name, have, want in sides:
            if want == have and want > 0 and shrinking and name not in dict(shrinking):
                self._wait_ready(ns, name, want, progress)
        for name, want in shrinking:
            self._scale_down(ns, name, want)

    def _wait_ready(self, namespace: str, name: str, wanted: int, progress: Progress) -> None:
        def probe() -> tuple[bool, str]:
            state = self.workloads.availability(namespace, name)
            detail = f"{state.available} of {wanted} pods of {name} available"
            return _ready_for(state, wanted), detail

        progress.wait_until(f"deployment {namespace}/{name} at {wanted} ready replicas", probe)

    def _scale_down(self, namespace: str, name: str, replicas: int) -> None:
        try:
            self.workloads.scale(namespace, name, replicas)
        except NotFoundError:
            pass  # gone already: nothing left to take traffic away from
