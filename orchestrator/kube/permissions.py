"""The Kubernetes permissions the orchestrator's code needs: the single source of truth.

Shape: ``PERMISSIONS`` is a flat list of ``Permission`` entries, one per (API group, resource),
each with the exact verbs the code calls and a one-line reason. Two renderings derive from it:

* ``rbac_rules(scope=...)`` turns the list into RBAC ``rules`` (resources of one API group that
  need the same verbs share a rule, so each rule's verbs are exact for every resource in it);
* ``python -m orchestrator.kube.permissions`` prints the JSON document the Helm chart renders
  its Role/ClusterRole rules from (``helm/orchestrator/files/permissions.json``). A test fails
  when that file and this list disagree, so the chart cannot drift from the code.

Cluster-scoped permissions carry the chart value (``feature``) that turns on the code path
needing them; the chart grants them only when that feature is enabled, so a default install
holds no cluster-wide rights at all.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, Literal

Scope = Literal["namespace", "cluster"]


@dataclass(frozen=True)
class Permission:
    api_group: str  # "" is the core group
    resource: str  # may be a subresource, e.g. "deployments/scale"
    verbs: tuple[str, ...]
    scope: Scope = "namespace"
    why: str = ""
    # For cluster-scoped entries: the key under the chart's ``chaos`` values whose ``enabled``
    # switch grants it (e.g. "nodeDrain" -> chaos.nodeDrain.enabled).
    feature: str | None = None


PERMISSIONS: list[Permission] = [
    # --- workloads (canary rollouts, chaos targets) ---
    Permission(
        "apps",
        "deployments",
        ("get", "list", "create", "patch", "update", "delete"),
        why="read the stable Deployment and create, replace (promote) and delete app-canary/app-baseline "
        "(kube/workloads); list chaos targets; patch chaos marks and scale-down replicas; "
        "the janitor lists marked ones",
    ),
    Permission(
        "apps",
        "deployments/scale",
        ("get", "patch"),
        why="read and set canary/baseline replicas, the replica-ratio traffic split (kube/workloads)",
    ),
    Permission(
        "",
        "pods",
        ("get", "list", "delete", "patch"),
        why="list chaos target pods, read their opt-in annotation, mark an ownerless pod before "
        "pod-kill, delete pod-kill victims",
    ),
    Permission(
        "apps",
        "replicasets",
        ("list",),
        why="the recent-deployments rail: a Deployment's newest ReplicaSet dates its last rollout (rails/rollouts)",
    ),
    Permission(
        "apps",
        "statefulsets",
        ("get", "list", "patch"),
        why="the recent-deployments rail: a StatefulSet matching a chaos target that is rolling out (rails/rollouts); "
        "chaos targets owned by a StatefulSet: its replicas and update strategy (ready-pod floor), the opt-in "
        "annotation and the pod-kill mark; the janitor lists marked ones",
    ),
    Permission(
        "",
        "resourcequotas",
        ("list",),
        why="the capacity rail: the canary's and baseline's pods must fit the namespace's quotas (rails/capacity)",
    ),
    Permission(
        "policy",
        "poddisruptionbudgets",
        ("list",),
        why="chaos ready-pod floors: the PodDisruptionBudgets selecting a target workload's pods (chaos/radius)",
    ),
    Permission(
        "",
        "services",
        ("get", "create", "update", "delete"),
        why="create, replace and remove the canary/baseline Services that routers send weighted "
        "traffic to (kube/workloads)",
    ),
    Permission(
        "",
        "configmaps",
        ("get", "patch"),
        why="flagd/OpenFeature flag definitions live in a ConfigMap; a ramp or kill switch patches it",
    ),
    # A namespace is cluster-scoped, but GET /api/v1/namespaces/<ns> is authorized as a request *in* <ns>,
    # so a Role grants reading exactly the namespace it lives in and nothing else.
    Permission(
        "", "namespaces", ("get",), why="read the chaos opt-in annotation of the target namespace itself (chaos/safety)"
    ),
    # --- traffic routers and fault injectors on custom resources ---
    Permission(
        "gateway.networking.k8s.io",
        "httproutes",
        ("get", "update"),
        why="Gateway API router: read and replace backendRef weights stable/canary",
    ),
    Permission(
        "networking.istio.io",
        "virtualservices",
        ("get", "list", "patch", "update"),
        why="Istio router replaces route weights; the http-fault injector patches fault rules and "
        "chaos marks; the janitor lists marked ones",
    ),
    Permission(
        "chaos-mesh.org",
        "networkchaos",
        ("get", "list", "create", "delete"),
        why="create and delete NetworkChaos objects (chaos_mesh injector); the janitor lists marked ones",
    ),
    Permission(
        "chaos-mesh.org",
        "stresschaos",
        ("get", "list", "create", "delete"),
        why="create and delete StressChaos objects (chaos_mesh injector); the janitor lists marked ones",
    ),
    Permission(
        "chaos-mesh.org",
        "iochaos",
        ("get", "list", "create", "delete"),
        why="create and delete IOChaos objects (chaos_mesh injector); the janitor lists marked ones",
    ),
    # --- cluster-scoped, each granted only with the chart feature that needs it ---
    Permission(
        "",
        "nodes",
        ("get", "list", "patch"),
        scope="cluster",
        feature="nodeDrain",
        why="node-drain: read a node, cordon/uncordon it (patch spec.unschedulable) and mark it; "
        "the janitor lists marked nodes",
    ),
    Permission(
        "",
        "pods",
        ("list",),
        scope="cluster",
        feature="nodeDrain",
        why="node-drain: list the pods on the drained node in every namespace (spec.nodeName selector)",
    ),
    Permission(
        "apps",
        "deployments",
        ("get", "list"),
        scope="cluster",
        feature="nodeDrain",
        why="node-drain: the workloads of the pods it would evict in any namespace, for their ready-pod floors",
    ),
    Permission(
        "apps",
        "statefulsets",
        ("get", "list"),
        scope="cluster",
        feature="nodeDrain",
        why="node-drain: the StatefulSets of the pods it would evict in any namespace, for their floors",
    ),
    Permission(
        "policy",
        "poddisruptionbudgets",
        ("list",),
        scope="cluster",
        feature="nodeDrain",
        why="node-drain: the PodDisruptionBudgets over the pods it would evict in any namespace",
    ),
    Permission(
        "",
        "namespaces",
        ("get",),
        scope="cluster",
        feature="nodeDrain",
        why="node-drain: the opt-in annotation of every namespace whose pods it would evict",
    ),
    Permission(
        "",
        "pods/eviction",
        ("create",),
        scope="cluster",
        feature="nodeDrain",
        why="node-drain: evict every pod on the node through the Eviction API, so "
        "PodDisruptionBudgets decide; those pods may live in any namespace",
    ),
    Permission(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("get",),
        scope="cluster",
        feature="chaosMesh",
        why="Chaos Mesh injectors check that its CRD exists before planning",
    ),
]


def permissions(scope: Scope | None = None) -> list[Permission]:
    """The permission list, optionally only one scope."""
    return [p for p in PERMISSIONS if scope is None or p.scope == scope]


def rbac_rules(scope: Scope = "namespace", features: set[str] | None = None) -> list[dict[str, list[str]]]:
    """RBAC ``rules`` for ``scope``.

    Resources of one API group with identical verb sets share a rule; rule order follows the
    list (first appearance), so the output is stable. For the cluster scope, ``features``
    restricts the rules to the enabled features (``None`` means all).
    """
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for p in permissions(scope):
        if features is not None and p.feature not in features:
            continue
        grouped.setdefault((p.api_group, tuple(sorted(p.verbs))), []).append(p.resource)
    return [
        {"apiGroups": [group], "resources": resources, "verbs": list(verbs)}
        for (group, verbs), resources in grouped.items()
    ]


def triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Flatten RBAC rules to (api group, resource, verb) triples, for exact comparisons."""
    out: set[tuple[str, str, str]] = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out


def chart_document() -> dict[str, Any]:
    """The document the Helm chart reads from ``files/permissions.json``.

    ``namespaced`` are rules for the per-namespace Role (or the cluster-wide one); ``cluster``
    holds one entry per feature with the cluster-scoped rules that feature needs.
    """
    features = sorted({p.feature for p in permissions("cluster") if p.feature})
    return {
        "generatedBy": "python -m orchestrator.kube.permissions",
        "namespaced": rbac_rules("namespace"),
        "cluster": [{"feature": f, "rules": rbac_rules("cluster", {f})} for f in features],
    }


def render_json() -> str:
    return json.dumps(chart_document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    sys.stdout.write(render_json())


if __name__ == "__main__":
    main()
