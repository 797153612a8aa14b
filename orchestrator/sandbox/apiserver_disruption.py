"""PodDisruptionBudget arithmetic, shared by the eviction endpoint and the controller that writes PDB status.

``budget_status(pdb, pods)`` computes what the disruption controller reports (expectedPods, currentHealthy,
desiredHealthy, disruptionsAllowed) from the pods of the PDB's namespace; ``evict`` checks every PDB that
selects a pod and deletes it only when all of them allow one more disruption.
"""

from __future__ import annotations

import math
from typing import Any

from orchestrator.sandbox.apiserver_resources import ApiError
from orchestrator.sandbox.apiserver_selectors import selector_matches
from orchestrator.sandbox.apiserver_store import Obj, Store


def pod_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _scaled(value: Any, total: int) -> int:
    """An IntOrString: an int, or a percentage of ``total`` rounded up (as the disruption controller does)."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value)


def budget_status(pdb: Obj, pods: list[Obj]) -> dict[str, Any]:
    spec = pdb.get("spec") or {}
    selected = [
        p for p in pods
        if selector_matches(spec.get("selector"), (p.get("metadata") or {}).get("labels"))
    ]
    expected = len(selected)
    healthy = sum(1 for p in selected if pod_ready(p))
    if spec.get("minAvailable") is not None:
        desired = _scaled(spec["minAvailable"], expected)
    elif spec.get("maxUnavailable") is not None:
        desired = max(0, expected - _scaled(spec["maxUnavailable"], expected))
    else:
        desired = 0
    return {
        "observedGeneration": (pdb.get("metadata") or {}).get("generation", 1),
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": max(0, healthy - desired),
    }


def evict(store: Store, namespace: str, name: str, *, dry_run: bool = False,
          preconditions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Delete a pod unless a disruption budget forbids it (429); returns the Status the server answers."""
    with store.transaction():
        pod = store.get("", "v1", "pods", namespace, name)
        labels = (pod.get("metadata") or {}).get("labels")
        budgets = [
            b for b in store.list("policy", "v1", "poddisruptionbudgets", namespace)
            if selector_matches((b.get("spec") or {}).get("selector"), labels)
        ]
        # An unready pod does not count as healthy, so evicting it never lowers the healthy count.
        if pod_ready(pod) and budgets:
            pods = store.list("", "v1", "pods", namespace)
            for budget in budgets:
                status = budget_status(budget, pods)
                if status["disruptionsAllowed"] < 1:
                    budget_name = budget["metadata"]["name"]
                    raise ApiError(
                        429,
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        reason="TooManyRequests",
                        details={
                            "causes": [{
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {budget_name} needs "
                                f"{status['desiredHealthy']} healthy pods and has {status['currentHealthy']} "
                                "currently",
                            }],
                        },
                    )
        store.delete("", "v1", "pods", namespace, name, dry_run=dry_run, preconditions=preconditions)
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201,
        "details": {"name": name, "kind": "pods", "uid": pod["metadata"]["uid"]},
    }
