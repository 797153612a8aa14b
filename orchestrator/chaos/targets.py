"""Resolving an experiment's target: which pods the selector matches and which of them to hit.

The choice is deterministic: candidates are sorted by name and sampled with ``random.Random(seed)``,
so the same seed over the same pods picks the same pods (a dry run shows exactly what a run will
hit, and a retried activity picks again what the first attempt picked). Pods already being deleted
are not candidates: they are going away anyway, and counting them would understate the blast radius.

Each pod's ``owner`` is the Deployment whose selector matches its labels in the same namespace
(the workload the opt-in annotation and the canary-rollout check refer to).
"""

from __future__ import annotations

import random
from typing import Any

from orchestrator.chaos.models import PodInfo, TargetSet
from orchestrator.chaos.objects import DEPLOYMENT, POD, Objects, labels_of
from orchestrator.specs.chaos import ChaosTarget, Mode

__all__ = ["count_for", "label_selector", "resolve"]


def label_selector(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def count_for(mode: Mode, candidates: int) -> int:
    """How many of ``candidates`` the mode hits (percent rounds down, but hits at least one)."""
    if candidates == 0:
        return 0
    if mode.type == "one":
        return 1
    if mode.type == "all":
        return candidates
    assert mode.value is not None
    if mode.type == "fixed":
        return min(mode.value, candidates)
    return max(1, candidates * mode.value // 100)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    match = selector.get("matchLabels") or {}
    if not match and not selector.get("matchExpressions"):
        return False  # an empty selector would own every pod: never treat it as the owner
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def resolve(objects: Objects, target: ChaosTarget, seed: int) -> TargetSet:
    pods = objects.list(POD, target.namespace, label_selector(target.selector))
    deployments = objects.list(DEPLOYMENT, target.namespace)
    candidates: list[PodInfo] = []
    owners: set[str] = set()
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        labels = labels_of(pod)
        owner = next(
            (
                str(d["metadata"]["name"])
                for d in sorted(deployments, key=lambda d: str(d["metadata"]["name"]))
                if _matches((d.get("spec") or {}).get("selector") or {}, labels)
            ),
            None,
        )
        if owner:
            owners.add(owner)
        candidates.append(
            PodInfo(
                namespace=target.namespace,
                name=str(meta["name"]),
                node=(pod.get("spec") or {}).get("nodeName"),
                labels=labels,
                owner=owner,
            )
        )
    n = count_for(target.mode, len(candidates))
    chosen = sorted(random.Random(seed).sample(candidates, n), key=lambda p: p.name)
    return TargetSet(
        namespace=target.namespace,
        selector=dict(target.selector),
        candidates=candidates,
        chosen=chosen,
        deployments=sorted(owners),
        seed=seed,
    )
