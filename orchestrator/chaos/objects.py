"""Read, list, patch, create and delete any object a fault touches, as plain JSON dicts.

Faults, the ledger and the janitor address objects by ``ObjectRef`` (apiVersion, kind,
namespace, name) rather than by typed client calls, so one table below maps each kind onto
the official client's typed API (core and apps) or ``CustomObjectsApi`` (Istio, Chaos Mesh).
Every call goes through ``kube_errors``: callers only ever see the project's exceptions.
Patches are JSON merge patches (``null`` deletes a key), which is what marking and
unmarking need and what every API server accepts for every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

from orchestrator.chaos.models import ObjectRef
from orchestrator.errors import NotFoundError
from orchestrator.kube.client import kube_errors, read_json

MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rsplit("/", 1)[0] if "/" in self.api_version else ""

    @property
    def version(self) -> str:
        return self.api_version.rsplit("/", 1)[-1]


DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments", True)
STATEFULSET = Kind("apps/v1", "StatefulSet", "statefulsets", True)
POD = Kind("v1", "Pod", "pods", True)
NODE = Kind("v1", "Node", "nodes", False)
NAMESPACE = Kind("v1", "Namespace", "namespaces", False)
VIRTUAL_SERVICE = Kind("networking.istio.io/v1beta1", "VirtualService", "virtualservices", True)
NETWORK_CHAOS = Kind("chaos-mesh.org/v1alpha1", "NetworkChaos", "networkchaos", True)
STRESS_CHAOS = Kind("chaos-mesh.org/v1alpha1", "StressChaos", "stresschaos", True)
IO_CHAOS = Kind("chaos-mesh.org/v1alpha1", "IOChaos", "iochaos", True)
PDB = Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True)

KINDS: dict[str, Kind] = {
    k.kind: k for k in (
        DEPLOYMENT, STATEFULSET, POD, NODE, NAMESPACE, VIRTUAL_SERVICE, NETWORK_CHAOS, STRESS_CHAOS, IO_CHAOS, PDB,
    )
}
MARKABLE = (DEPLOYMENT, STATEFULSET, POD, NODE, VIRTUAL_SERVICE, NETWORK_CHAOS, STRESS_CHAOS, IO_CHAOS)
"""The kinds a fault marks or creates: the janitor lists exactly these."""


def kind_of(ref: ObjectRef) -> Kind:
    try:
        return KINDS[ref.kind]
    except KeyError:
        raise NotFoundError(f"no chaos fault manages objects of kind {ref.kind}") from None


def ref(kind: Kind, name: str, namespace: str | None = None) -> ObjectRef:
    return ObjectRef(api_version=kind.api_version, kind=kind.kind, namespace=namespace, name=name)


class Objects:
    """Kind-generic access to the API server; every method answers JSON dicts."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self.core = k8s.CoreV1Api(api_client)
        self.apps = k8s.AppsV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.ext = k8s.ApiextensionsV1Api(api_client)

    def _opts(self) -> dict[str, Any]:
        return {"_preload_content": False}

    def get(self, r: ObjectRef) -> dict[str, Any]:
        k = kind_of(r)
        with kube_errors(f"get {r}", self.api_client):
            if k is DEPLOYMENT:
                resp = self.apps.read_namespaced_deployment(r.name, r.namespace, **self._opts())
            elif k is STATEFULSET:
                resp = self.apps.read_namespaced_stateful_set(r.name, r.namespace, **self._opts())
            elif k is POD:
                resp = self.core.read_namespaced_pod(r.name, r.namespace, **self._opts())
            elif k is NODE:
                resp = self.core.read_node(r.name, **self._opts())
            elif k is NAMESPACE:
                resp = self.core.read_namespace(r.name, **self._opts())
            else:
                resp = self.custom.get_namespaced_custom_object(
                    k.group, k.version, r.namespace, k.plural, r.name, **self._opts()
                )
        return read_json(resp)

    def get_or_none(self, r: ObjectRef) -> dict[str, Any] | None:
        try:
            return self.get(r)
        except NotFoundError:
            return None

    def list(
        self, k: Kind, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of kind ``k`` in ``namespace`` (every namespace when None)."""
        opts: dict[str, Any] = dict(self._opts())
        if label_selector:
            opts["label_selector"] = label_selector
        where = f"list {k.plural}" + (f" in {namespace}" if namespace else "")
        with kube_errors(where, self.api_client):
            if k is DEPLOYMENT:
                resp = (
                    self.apps.list_namespaced_deployment(namespace, **opts)
                    if namespace
                    else self.apps.list_deployment_for_all_namespaces(**opts)
                )
            elif k is STATEFULSET:
                resp = (
                    self.apps.list_namespaced_stateful_set(namespace, **opts)
                    if namespace
                    else self.apps.list_stateful_set_for_all_namespaces(**opts)
                )
            elif k is POD:
                resp = (
                    self.core.list_namespaced_pod(namespace, **opts)
                    if namespace
                    else self.core.list_pod_for_all_namespaces(**opts)
                )
            elif k is NODE:
                resp = self.core.list_node(**opts)
            elif k is PDB:
                policy = k8s.PolicyV1Api(self.api_client)
                resp = (
                    policy.list_namespaced_pod_disruption_budget(namespace, **opts)
                    if namespace
                    else policy.list_pod_disruption_budget_for_all_namespaces(**opts)
                )
            elif namespace:
                resp = self.custom.list_namespaced_custom_object(
                    k.group, k.version, namespace, k.plural, **opts
                )
            else:
                resp = self.custom.list_cluster_custom_object(k.group, k.version, k.plural, **opts)
        items = read_json(resp).get("items") or []
        return [i for i in items if isinstance(i, dict)]

    def patch(self, r: ObjectRef, body: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch of ``r``; a ``metadata.resourceVersion`` in ``body`` makes it conditional."""
        k = kind_of(r)
        opts = {**self._opts(), "_content_type": MERGE_PATCH}
        with kube_errors(f"patch {r}", self.api_client):
            if k is DEPLOYMENT:
                resp = self.apps.patch_namespaced_deployment(r.name, r.namespace, body, **opts)
            elif k is STATEFULSET:
                resp = self.apps.patch_namespaced_stateful_set(r.name, r.namespace, body, **opts)
            elif k is POD:
                resp = self.core.patch_namespaced_pod(r.name, r.namespace, body, **opts)
            elif k is NODE:
                resp = self.core.patch_node(r.name, body, **opts)
            elif k is NAMESPACE:
                resp = self.core.patch_namespace(r.name, body, **opts)
            else:
                resp = self.custom.patch_namespaced_custom_object(
                    k.group, k.version, r.namespace, k.plural, r.name, body, **opts
                )
        return read_json(resp)

    def create(self, r: ObjectRef, body: dict[str, Any]) -> dict[str, Any]:
        k = kind_of(r)
        with kube_errors(f"create {r}", self.api_client):
            resp = self.custom.create_namespaced_custom_object(
                k.group, k.version, r.namespace, k.plural, body, **self._opts()
            )
        return read_json(resp)

    def delete(self, r: ObjectRef, grace_period_seconds: int | None = None,
               preconditions: dict[str, str] | None = None) -> bool:
        """Delete ``r``; False when it was already gone.

        ``preconditions`` (``uid``, ``resourceVersion``) make the delete conditional: 409 when ``r`` changed.
        """
        k = kind_of(r)
        opts: dict[str, Any] = dict(self._opts())
        if grace_period_seconds is not None:
            opts["grace_period_seconds"] = grace_period_seconds
        if preconditions:
            opts["body"] = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(
                uid=preconditions.get("uid"), resource_version=preconditions.get("resourceVersion")))
        try:
            with kube_errors(f"delete {r}", self.api_client):
                if k is POD:
                    self.core.delete_namespaced_pod(r.name, r.namespace, **opts)
                elif k is DEPLOYMENT:
                    self.apps.delete_namespaced_deployment(r.name, r.namespace, **opts)
                else:
                    self.custom.delete_namespaced_custom_object(
                        k.group, k.version, r.namespace, k.plural, r.name, **opts
                    )
        except NotFoundError:
            return False
        return True

    def evict(self, namespace: str, name: str, preconditions: dict[str, str] | None = None) -> None:
        """POST the pod's eviction subresource, so PodDisruptionBudgets decide (429 when one refuses).

        ``preconditions`` (``uid``, ``resourceVersion``) make it conditional on the pod as read: 409 when it changed.
        """
        options = None
        if preconditions:
            options = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(
                uid=preconditions.get("uid"), resource_version=preconditions.get("resourceVersion")))
        body = k8s.V1Eviction(
            api_version="policy/v1",
            kind="Eviction",
            metadata=k8s.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=options,
        )
        with kube_errors(f"evict pod {namespace}/{name}", self.api_client):
            self.core.create_namespaced_pod_eviction(
                name, namespace, body, _preload_content=False
            )

    def crd_installed(self, name: str) -> bool:
        """Whether the CustomResourceDefinition ``name`` (e.g. ``networkchaos.chaos-mesh.org``) exists."""
        try:
            with kube_errors(f"get customresourcedefinition {name}", self.api_client):
                self.ext.read_custom_resource_definition(name, **self._opts())
        except NotFoundError:
            return False
        return True


def labels_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def annotations_of(obj: dict[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})
