"""What the sandbox API server knows about resources: names, scopes, errors and request paths.

Three pieces, all pure (no storage, no I/O):

* ``ApiError`` — a failure the server answers with a Kubernetes ``Status`` object, so the official client raises
  ``ApiException`` with the right ``status`` and ``reason``.
* ``ResourceInfo`` and ``BUILTINS`` — the built-in resources with their kind and scope. Anything else is a custom
  resource: namespaced unless a CustomResourceDefinition says ``Cluster``, its kind taken from the CRD or the body.
* ``parse_path`` — turns ``/api/v1/namespaces/ns/pods/p/eviction`` into a ``Target``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

# Verbs advertised in discovery; the server implements all of them for every resource.
ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
}


class ApiError(Exception):
    """A request the server refuses; rendered as a ``Status`` body with the same code."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def not_found(info: ResourceInfo, name: str) -> ApiError:
    qualified = f"{info.plural}.{info.group}" if info.group else info.plural
    return ApiError(
        404,
        f'{qualified} "{name}" not found',
        details={"name": name, "group": info.group, "kind": info.plural},
    )


@dataclass(frozen=True)
class ResourceInfo:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    # Subresources besides the main resource, as advertised in discovery.
    subresources: tuple[str, ...] = ()
    builtin: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def with_version(self, version: str) -> ResourceInfo:
        return replace(self, version=version)


def _b(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    short: tuple[str, ...] = (),
    sub: tuple[str, ...] = (),
) -> ResourceInfo:
    return ResourceInfo(group, version, plural, kind, namespaced, kind.lower(), short, sub)


BUILTINS: dict[tuple[str, str], ResourceInfo] = {
    r.group_resource: r
    for r in [
        _b("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize")),
        _b("", "v1", "nodes", "Node", False, ("no",), ("status",)),
        _b("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), ("status",)),
        _b("", "v1", "pods", "Pod", True, ("po",), ("status", "eviction")),
        _b("", "v1", "services", "Service", True, ("svc",), ("status",)),
        _b("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
        _b("", "v1", "secrets", "Secret", True),
        _b("", "v1", "events", "Event", True, ("ev",)),
        _b("", "v1", "endpoints", "Endpoints", True, ("ep",)),
        _b("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
        _b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), ("status",)),
        _b("", "v1", "resourcequotas", "ResourceQuota", True, ("quota",), ("status",)),
        _b("apps", "v1", "deployments", "Deployment", True, ("deploy",), ("status", "scale")),
        _b("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), ("status", "scale")),
        _b("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), ("status", "scale")),
        _b("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), ("status",)),
        _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), ("status",)),
        _b(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
            ("crd", "crds"), ("status",),
        ),
        _b("coordination.k8s.io", "v1", "leases", "Lease", True),
        _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        _b("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        _b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True),
        _b("batch", "v1", "jobs", "Job", True, (), ("status",)),
        _b("batch", "v1", "cronjobs", "CronJob", True, ("cj",), ("status",)),
        _b("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler", True, ("hpa",), ("status",)),
    ]
}

# Deleting these returns the deleted object (the client's return type is the object); everything else
# returns a Status, as the real server does.
RETURNS_DELETED_OBJECT = {
    ("", "pods"), ("", "services"), ("", "serviceaccounts"), ("", "namespaces"),
    ("", "persistentvolumes"), ("", "persistentvolumeclaims"),
}

# Built-ins whose main endpoint ignores status changes because status has its own subresource.
STATUS_SUBRESOURCE = {gr for gr, info in BUILTINS.items() if "status" in info.subresources}


def custom_info(group: str, version: str, plural: str, kind: str | None, namespaced: bool) -> ResourceInfo:
    """A resource nobody declared built-in: kind from the CRD or the body, else a guess from the plural."""
    singular = plural[:-1] if plural.endswith("s") else plural
    return ResourceInfo(
        group, version, plural, kind or singular.capitalize(), namespaced, singular,
        subresources=("status",), builtin=False,
    )


@dataclass(frozen=True)
class Target:
    """The object or collection a request path names."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_path(path: str) -> Target | None:
    """Parse a resource path; ``None`` for discovery and other non-resource paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace: str | None = rest[1]
        rest = rest[2:]
    else:
        namespace = None
    if len(rest) > 3:
        return None
    return Target(
        group=group,
        version=version,
        plural=rest[0],
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource=rest[2] if len(rest) > 2 else None,
    )
