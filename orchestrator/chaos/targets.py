"""Resolving an experiment's target: which pods the selector matches and which of them to hit.

The choice is deterministic: candidates are sorted by name and sampled with ``random.Random(seed)``,
so the same seed over the same pods picks the same pods (a dry run shows exactly what a run will
hit, and a retried activity picks again what the first attempt picked).

What counts, and why:

* Pods being deleted, and pods that finished, are not candidates: they are going away anyway.
* Only **ready** pods are picked and counted in the blast radius (``TargetSet.candidates`` keeps
  the not-ready ones too, flagged, for the record): a Pending or not-yet-ready pod serves nothing,
  so counting it would understate how much of the service a fault takes away, and killing it hurts
  nothing.
* Each pod belongs to a **workload**: the StatefulSet its ``ownerReferences`` name, else the
  Deployment (then the StatefulSet) whose selector matches its labels in the same namespace. The
  workload is the unit the opt-in annotation, the percentages and the ready-pod floors refer to.
* ``mode: percent`` is applied **per workload** (each workload the selector matches loses that share
  of its ready pods, at least one), so a small Deployment inside a large selector is never emptied
  because its pods happened to be sampled together; ``one``, ``fixed`` and ``all`` count over every
  ready candidate.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from orchestrator.chaos.models import PodInfo, TargetSet
from orchestrator.chaos.objects import DEPLOYMENT, POD, STATEFULSET, Objects, labels_of
from orchestrator.specs.chaos import ChaosTarget, Mode

__all__ = ["count_for", "label_selector", "pod_is_ready", "resolve", "resolve_pods", "selector_matches"]


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


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes ``LabelSelector`` (matchLabels and matchExpressions) against a pod's labels."""
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


def pod_is_ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def _owner(
    pod: dict[str, Any], deployments: list[dict[str, Any]], statefulsets: list[dict[str, Any]]
) -> tuple[str | None, str]:
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "StatefulSet" and ref.get("name"):
            return str(ref["name"]), "StatefulSet"
    labels = labels_of(pod)
    for kind, items in (("Deployment", deployments), ("StatefulSet", statefulsets)):
        for w in sorted(items, key=lambda d: str(d["metadata"]["name"])):
            if selector_matches((w.get("spec") or {}).get("selector") or {}, labels):
                return str(w["metadata"]["name"]), kind
    return None, "Deployment"


def resolve_pods(objects: Objects, namespace: str, selector: dict[str, str]) -> list[PodInfo]:
    """Live pods of ``namespace`` matching ``selector``, sorted by name, with workload and readiness."""
    pods = objects.list(POD, namespace, label_selector(selector))
    deployments = objects.list(DEPLOYMENT, namespace)
    statefulsets = objects.list(STATEFULSET, namespace)
    out: list[PodInfo] = []
    for pod in sorted(pods, key=lambda p: str(p["metadata"]["name"])):
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        owner, kind = _owner(pod, deployments, statefulsets)
        out.append(PodInfo(
            namespace=namespace, name=str(meta["name"]), node=(pod.get("spec") or {}).get("nodeName"),
            labels=labels_of(pod), owner=owner, owner_kind=kind, ready=pod_is_ready(pod),
        ))
    return out


def choose(candidates: list[PodInfo], mode: Mode, seed: int) -> list[PodInfo]:
    """The mode's pick among the ready candidates (percent per workload), sorted by name."""
    ready = [p for p in candidates if p.ready]
    rng = random.Random(seed)
    if mode.type != "percent":
        return sorted(rng.sample(ready, count_for(mode, len(ready))), key=lambda p: p.name)
    groups: dict[str, list[PodInfo]] = defaultdict(list)
    for pod in ready:
        groups[pod.workload or f"(no workload) {pod.namespace}"].append(pod)
    chosen: list[PodInfo] = []
    for key in sorted(groups):
        chosen += rng.sample(groups[key], count_for(mode, len(groups[key])))
    return sorted(chosen, key=lambda p: p.name)


def resolve(objects: Objects, target: ChaosTarget, seed: int) -> TargetSet:
    candidates = resolve_pods(objects, target.namespace, target.selector)
    return TargetSet(
        namespace=target.namespace,
        selector=dict(target.selector),
        candidates=candidates,
        chosen=choose(candidates, target.mode, seed),
        deployments=sorted({p.owner for p in candidates if p.owner and p.owner_kind == "Deployment"}),
        statefulsets=sorted({p.owner for p in candidates if p.owner and p.owner_kind == "StatefulSet"}),
        seed=seed,
    )
