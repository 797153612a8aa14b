"""Read-only views of the cluster the rails need, through the official client, as plain dicts.

Only ``list`` and ``get``: a rail never writes, which is what lets ``--dry-run`` run every rail
and promise that nothing was touched. Errors come out as the project's (``kube_errors``).
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from orchestrator.kube.client import kube_errors, read_json

Obj = dict[str, Any]


class ClusterReader:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)

    @staticmethod
    def _opts(label_selector: str | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {"_preload_content": False}
        if label_selector:
            opts["label_selector"] = label_selector
        return opts

    def _items(self, resp: Any) -> list[Obj]:
        return [i for i in read_json(resp).get("items") or [] if isinstance(i, dict)]

    def deployment(self, namespace: str, name: str) -> Obj:
        with kube_errors(f"get deployment {namespace}/{name}", self.api_client):
            return read_json(self.apps.read_namespaced_deployment(name, namespace, **self._opts()))

    def deployments(self, namespace: str) -> list[Obj]:
        with kube_errors(f"list deployments in {namespace}", self.api_client):
            return self._items(self.apps.list_namespaced_deployment(namespace, **self._opts()))

    def statefulsets(self, namespace: str) -> list[Obj]:
        with kube_errors(f"list statefulsets in {namespace}", self.api_client):
            return self._items(self.apps.list_namespaced_stateful_set(namespace, **self._opts()))

    def replicasets(self, namespace: str) -> list[Obj]:
        with kube_errors(f"list replicasets in {namespace}", self.api_client):
            return self._items(self.apps.list_namespaced_replica_set(namespace, **self._opts()))

    def pods(self, namespace: str | None = None) -> list[Obj]:
        where = f"list pods in {namespace}" if namespace else "list pods"
        with kube_errors(where, self.api_client):
            if namespace:
                return self._items(self.core.list_namespaced_pod(namespace, **self._opts()))
            return self._items(self.core.list_pod_for_all_namespaces(**self._opts()))

    def nodes(self) -> list[Obj]:
        with kube_errors("list nodes", self.api_client):
            return self._items(self.core.list_node(**self._opts()))

    def quotas(self, namespace: str) -> list[Obj]:
        with kube_errors(f"list resourcequotas in {namespace}", self.api_client):
            return self._items(self.core.list_namespaced_resource_quota(namespace, **self._opts()))


def meta(obj: Obj) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def template_labels(workload: Obj) -> dict[str, str]:
    labels = ((((workload.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}
    return {str(k): str(v) for k, v in labels.items()}
