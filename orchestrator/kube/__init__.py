"""The Kubernetes layer: connecting, workloads, and traffic routers.

Public surface (everything else is private to the package)::

    load_api_client, check_reachable, kube_errors, retry_on_conflict     client.py
    Workloads, DeploymentSnapshot, Availability                         workloads.py
    labels (ownership labels and annotations)                           labels.py
    RouteTarget, TrafficRouter, ROUTERS, router_for                     routers/

Nothing here imports from the activity, workflow or CLI layers; every client error leaves as an
``orchestrator.errors`` exception.
"""

from __future__ import annotations

from orchestrator.kube import labels
from orchestrator.kube.client import (
    REQUEST_TIMEOUT,
    check_reachable,
    kube_errors,
    load_api_client,
    retry_on_conflict,
)
from orchestrator.kube.routers import ROUTERS, RouteTarget, TrafficRouter, router_for
from orchestrator.kube.workloads import Availability, DeploymentSnapshot, Workloads

__all__ = [
    "REQUEST_TIMEOUT",
    "ROUTERS",
    "Availability",
    "DeploymentSnapshot",
    "RouteTarget",
    "TrafficRouter",
    "Workloads",
    "check_reachable",
    "kube_errors",
    "labels",
    "load_api_client",
    "retry_on_conflict",
    "router_for",
]
