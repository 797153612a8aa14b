"""Traffic routers, one module each, chosen by the spec's ``traffic.type``.

Adding a router (Linkerd, SMI, Traefik...) is one module implementing ``TrafficRouter`` and one line in
``ROUTERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.errors import KubeError
from orchestrator.kube.routers.base import RouteTarget, TrafficRouter
from orchestrator.kube.routers.gateway_api import GatewayApiRouter
from orchestrator.kube.routers.istio import IstioRouter
from orchestrator.kube.routers.replicas import ReplicasRouter, replica_split
from orchestrator.specs.canary import Routing

__all__ = [
    "ROUTERS",
    "GatewayApiRouter",
    "IstioRouter",
    "ReplicasRouter",
    "RouteTarget",
    "TrafficRouter",
    "replica_split",
    "router_for",
]

# Each factory takes a kubernetes ApiClient.
RouterFactory = Callable[[Any], TrafficRouter]

ROUTERS: Mapping[str, RouterFactory] = {
    "replicas": ReplicasRouter,
    "gateway-api": GatewayApiRouter,
    "istio": IstioRouter,
}


def router_for(routing: Routing, api_client: Any) -> TrafficRouter:
    """The router for a spec's ``traffic`` section."""
    try:
        factory = ROUTERS[routing.type]
    except KeyError:
        known = ", ".join(sorted(ROUTERS))
        raise KubeError(f"no traffic router {routing.type!r} (known: {known})", retryable=False) from None
    return factory(api_client)
