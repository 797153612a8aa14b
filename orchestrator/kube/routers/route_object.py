"""Reading and replacing the one custom resource a mesh router manages (an HTTPRoute, a VirtualService).

Both mesh routers do read-modify-replace on a namespaced custom object with the project's error
wrapping; only the group, version, plural and the name used in messages differ.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubernetes import client as k8s

from orchestrator.kube.client import REQUEST_TIMEOUT, kube_errors, read_json
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
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
            )
        return read_json(resp)

    def _put(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        with kube_errors(f"update {self.noun} {namespace}/{name}", self.api_client):
            self.custom.replace_namespaced_custom_object(
                self.group, self.version, namespace, self.plural, name, body,
                _preload_content=False, _request_timeout=REQUEST_TIMEOUT,
            )
