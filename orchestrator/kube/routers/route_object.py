"""Reading and replacing the one custom resource a mesh router manages (an HTTPRoute, a VirtualService).

Both mesh routers do read-modify-replace on a namespaced custom object with the project's error
wrapping; only the group, version, plural and the name used in messages differ.

Reading back the weights we wrote proves only that the API server stored them. Whether the data plane
uses them is what the controller says in the object's status: ``status_verdict`` (one per router) reads
it. A route whose controller reports nothing gives ``None`` ("cannot confirm"), and the status says so,
rather than a confident ``True``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubernetes import client as k8s

from orchestrator.kube.client import kube_errors, read_json
from orchestrator.kube.routers.base import Progress, WeightReport
from orchestrator.kube.workloads import Workloads


class RouteObjectRouter:
    group: ClassVar[str]
    version: ClassVar[str]
    plural: ClassVar[str]
    noun: ClassVar[str]  # for messages: "httproute", "virtualservice"

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(api_client)
        self.workloads = Workloads(api_client)

    def _get(self, namespace: str, name: str) -> dict[str, Any]:
        with kube_errors(f"get {self.noun} {namespace}/{name}", self.api_client):
            resp = self.custom.get_namespaced_custom_object(
                self.group, self.version, namespace, self.plural, name,
                _preload_content=False,
            )
        return read_json(resp)

    def status_verdict(self, obj: dict[str, Any]) -> tuple[bool | None, str]:
        """Whether the controller reports ``obj``'s current spec as in effect (None: nothing reports)."""
        raise NotImplementedError

    def observed_generations(self, obj: dict[str, Any]) -> list[Any]:
        """Every ``observedGeneration`` the controller reports on ``obj`` (empty: it reports nothing)."""
        raise NotImplementedError

    def _wait_caught_up(self, namespace: str, name: str, progress: Progress) -> None:
        """Wait until the controller has processed the current spec (at once when it reports nothing)."""

        def probe() -> tuple[bool, str]:
            obj = self._get(namespace, name)
            current = generation(obj)
            behind = [g for g in self.observed_generations(obj) if observed_behind(g, current)]
            return not behind, f"controller at generation {behind[0] if behind else current} of {current}"

        progress.wait_until(f"{self.noun} {namespace}/{name} observed by its controller", probe)

    def _confirmed(self, obj: dict[str, Any], effective: float, weights: str) -> WeightReport:
        verified, why = self.status_verdict(obj)
        return WeightReport(effective=effective, verified=verified, detail=f"{weights}; {why}")

    def _put(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        with kube_errors(f"update {self.noun} {namespace}/{name}", self.api_client):
            self.custom.replace_namespaced_custom_object(
                self.group, self.version, namespace, self.plural, name, body,
                _preload_content=False,
            )


def generation(obj: dict[str, Any]) -> int:
    return int((obj.get("metadata") or {}).get("generation") or 0)


def observed_behind(observed: Any, current: int) -> bool:
    """Whether a reported ``observedGeneration`` is older than the object's generation (absent: not behind)."""
    if observed is None or observed == "":
        return False
    try:
        return int(observed) < current
    except (TypeError, ValueError):
        return True  # unreadable: do not claim it is current
