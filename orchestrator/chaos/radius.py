"""The blast radius, computed on what a fault actually touches: per workload, on ready pods, in every namespace.

A fault's plan lists every pod it hits (``Plan.hits``: killed, evicted, stressed, either side of a
partition), in any namespace. The rules applied to that list, in this order:

1. **Reach.** Every hit pod that is not one of the chosen targets (a drain's other pods, the far side
   of a partition) must itself be somewhere chaos may go: not in a protected namespace, and in an
   allowed namespace that opted in (the namespace, the pod's workload or the pod carries
   ``chaos.orchestrator.dev/allow: "true"``). A node drain may instead declare what it disturbs,
   ``blastRadius.disturb: {nodes, namespaces}``: pods of a declared namespace on a declared node
   pass without that consent (protected namespaces never do). Otherwise the experiment is refused,
   naming every offending pod.
2. **Percentages** (``blastRadius.maxPodsPercent``) per workload: Ready pods hit / Ready pods of the
   workload, for every workload with a hit pod (pods of no workload form one group per namespace),
   and over all Ready candidates together. The first round refuses when a share is exceeded (the
   spec asks for too much); a later round of a repeated fault is skipped instead, since a share can
   only grow there because pods are still coming back.
3. **Floors**, for faults that take pods down (``Plan.disrupts``: pod kill, node drain). Each
   workload (Deployment or StatefulSet) keeps at least ``floor`` Ready pods, the strictest of

   * its rollout strategy: ``max(1, replicas - maxUnavailable)``, maxUnavailable as a count or a
     percentage of replicas rounded down (a Deployment's default 25 %, a StatefulSet's default 1;
     ``Recreate`` and ``OnDelete`` give just the 1);
   * every PodDisruptionBudget selecting its pods: ``minAvailable`` (a percentage rounded up), or
     ``replicas - maxUnavailable`` (a percentage rounded up, as the disruption controller does);
   * the experiment's ``blastRadius.maxUnavailable``: ``replicas - maxUnavailable``.

   Ready means the pod's Ready condition is True and it is not being deleted; pending or
   not-ready pods are already unavailable, so they never count towards the floor. A round whose
   Ready hits would leave a workload below its floor is **skipped** (``Plan.skipped``), not refused:
   the next round may find the workload recovered.

Everything here reads; nothing writes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from orchestrator.chaos import safety
from orchestrator.chaos.models import ALLOW_ANNOTATION, Plan, PodInfo, WorkloadFloor
from orchestrator.chaos.objects import (
    DEPLOYMENT,
    NAMESPACE,
    PDB,
    POD,
    STATEFULSET,
    Kind,
    Objects,
    annotations_of,
    ref,
)
from orchestrator.chaos.targets import label_selector, pod_is_ready, resolve_pods, selector_matches
from orchestrator.errors import RefusedError
from orchestrator.specs.chaos import ChaosExperiment

__all__ = ["apply", "check_reach", "floor_of", "floors_for", "pod_infos", "ready_by_workload", "still_disruptable",
           "workload_floor"]

_KINDS: dict[str, Kind] = {"Deployment": DEPLOYMENT, "StatefulSet": STATEFULSET}
_SHOWN = 10  # offending pods named in one refusal before "and N more"


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def _strategy_limit(kind: str, spec: dict[str, Any]) -> tuple[Any, str]:
    """The workload's maxUnavailable during a rollout, and how it was found."""
    if kind == "Deployment":
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return None, "strategy Recreate"
        value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
        return value, f"rollout maxUnavailable {value}"
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return None, "updateStrategy OnDelete"
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", 1)
    return value, f"rollout maxUnavailable {value}"


def workload_floor(
    objects: Objects, kind: str, namespace: str, name: str, experiment: ChaosExperiment,
    pdbs: list[dict[str, Any]] | None = None,
) -> WorkloadFloor:
    """The ready-pod floor of one workload, with each limit it was the strictest of."""
    return floor_of(objects, kind, namespace, name, experiment.spec.blast_radius.max_unavailable, pdbs)


def floor_of(
    objects: Objects, kind: str, namespace: str, name: str, own: int | str | None,
    pdbs: list[dict[str, Any]] | None = None,
) -> WorkloadFloor:
    """``workload_floor`` with the experiment's own ``maxUnavailable`` given as ``own``."""
    obj = objects.get(ref(_KINDS[kind], name, namespace))
    spec = obj.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    selector = spec.get("selector") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    pods = objects.list(POD, namespace, label_selector(selector.get("matchLabels") or {}) or None)
    mine = [p for p in pods if selector_matches(selector, dict((p.get("metadata") or {}).get("labels") or {}))]
    ready = sum(1 for p in mine if pod_is_ready(p))

    limits: list[tuple[int, str]] = []
    value, how = _strategy_limit(kind, spec)
    unavailable = 0 if value is None else _scaled(value, replicas, round_up=False)
    limits.append((max(1, replicas - unavailable) if replicas > 0 else 0, how))
    for pdb in pdbs if pdbs is not None else objects.list(PDB, namespace):
        pspec = pdb.get("spec") or {}
        if not selector_matches(pspec.get("selector") or {}, dict(template_labels)):
            continue
        pname = (pdb.get("metadata") or {}).get("name")
        if pspec.get("minAvailable") is not None:
            limits.append((_scaled(pspec["minAvailable"], replicas, round_up=True),
                           f"PodDisruptionBudget {pname} minAvailable {pspec['minAvailable']}"))
        elif pspec.get("maxUnavailable") is not None:
            limits.append((max(0, replicas - _scaled(pspec["maxUnavailable"], replicas, round_up=True)),
                           f"PodDisruptionBudget {pname} maxUnavailable {pspec['maxUnavailable']}"))
    if own is not None:
        limits.append((max(0, replicas - _scaled(own, replicas, round_up=False)),
                       f"experiment maxUnavailable {own}"))
    floor = max(n for n, _ in limits)
    return WorkloadFloor(kind=kind, namespace=namespace, name=name, replicas=replicas, ready=ready, floor=floor,
                         sources=[f"{how} -> {n}" for n, how in limits])


def still_disruptable(objects: Objects, pod: dict[str, Any], own: int | str | None) -> str | None:
    """Right before a write takes ``pod`` down: why it must not now, else None.

    The plan checked readiness and floors earlier (before minutes of steady-state looks, or before
    earlier pods of the same round went down); this reads them again: a pod that is not ready is left
    alone, and so is one whose workload would drop below its floor.
    """
    if not pod_is_ready(pod):
        return "not ready"
    infos = pod_infos(objects, [pod])
    owner = infos[0].owner if infos else None
    if not owner:
        return None  # a pod of no workload has no floor
    floor = floor_of(objects, infos[0].owner_kind, infos[0].namespace, owner, own)
    if floor.ready - 1 < floor.floor:
        return f"{floor.key} would keep {floor.ready - 1} ready pod(s), below its floor of {floor.floor}"
    return None


def pod_infos(objects: Objects, pods: Iterable[dict[str, Any]]) -> list[PodInfo]:
    """``PodInfo`` (workload, readiness) for raw pods of any namespaces, e.g. everything on a node."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for p in pods:
        meta = p.get("metadata") or {}
        wanted[str(meta.get("namespace"))].add(str(meta.get("name")))
    out: list[PodInfo] = []
    for ns in sorted(wanted):
        # Resolving per namespace (one list of pods and workloads each) beats one lookup per pod.
        everything = resolve_pods_all(objects, ns)
        out += [p for p in everything if p.name in wanted[ns]]
    return out


def ready_by_workload(objects: Objects, namespace: str, selector: dict[str, str]) -> dict[str, int]:
    """Ready pods of each workload the selector's pods belong to, keyed ``namespace/name``."""
    owners = {p.owner for p in resolve_pods(objects, namespace, selector) if p.owner}
    counts = dict.fromkeys(sorted(f"{namespace}/{o}" for o in owners), 0)
    for pod in resolve_pods_all(objects, namespace):
        key = f"{namespace}/{pod.owner}"
        if pod.owner and key in counts and pod.ready:
            counts[key] += 1
    return counts


def resolve_pods_all(objects: Objects, namespace: str) -> list[PodInfo]:
    return resolve_pods(objects, namespace, {})


def floors_for(objects: Objects, hits: list[PodInfo], experiment: ChaosExperiment) -> list[WorkloadFloor]:
    """One floor per workload of the hit pods, with how many of its Ready pods this round takes down."""
    by_workload: dict[tuple[str, str, str], int] = defaultdict(int)
    for pod in hits:
        if pod.owner:
            by_workload[(pod.owner_kind, pod.namespace, pod.owner)] += 1 if pod.ready else 0
    pdbs: dict[str, list[dict[str, Any]]] = {}
    floors = []
    for (kind, ns, name), hit in sorted(by_workload.items()):
        if ns not in pdbs:
            pdbs[ns] = objects.list(PDB, ns)
        floor = workload_floor(objects, kind, ns, name, experiment, pdbs[ns])
        floors.append(floor.model_copy(update={"hit": hit}))
    return floors


def _consents(objects: Objects, pod: PodInfo, cache: dict[str, bool]) -> bool:
    def allowed(key: str, kind: Kind, name: str, namespace: str | None) -> bool:
        if key not in cache:
            obj = objects.get_or_none(ref(kind, name, namespace))
            cache[key] = obj is not None and annotations_of(obj).get(ALLOW_ANNOTATION) == "true"
        return cache[key]

    if allowed(f"ns/{pod.namespace}", NAMESPACE, pod.namespace, None):
        return True
    if pod.owner and allowed(f"{pod.workload}", _KINDS[pod.owner_kind], pod.owner, pod.namespace):
        return True
    return allowed(f"pod/{pod}", POD, pod.name, pod.namespace)


def check_reach(objects: Objects, policy: safety.ChaosPolicy, plan: Plan, experiment: ChaosExperiment) -> None:
    """Rule 1: every hit pod beyond the chosen targets is allowed, opted in, or declared."""
    chosen = {(p.namespace, p.name) for p in plan.targets.chosen}
    disturb = experiment.spec.blast_radius.disturb
    offending: list[str] = []
    consent: dict[str, bool] = {}
    for pod in plan.hits:
        if (pod.namespace, pod.name) in chosen:
            continue
        if pod.namespace in policy.protected:
            offending.append(f"{pod} (protected namespace)")
            continue
        if (disturb is not None and plan.disrupts and pod.node in disturb.nodes
                and pod.namespace in disturb.namespaces):
            continue
        try:
            safety.check_namespace(pod.namespace, policy)
        except RefusedError:
            offending.append(f"{pod} (namespace not allowed)")
            continue
        if not _consents(objects, pod, consent):
            offending.append(f"{pod} (not opted in)")
    if offending:
        shown = ", ".join(offending[:_SHOWN]) + (f" and {len(offending) - _SHOWN} more" if len(offending) > _SHOWN
                                                  else "")
        raise RefusedError(
            f"refused: the {plan.fault} would also hit {len(offending)} pod(s) outside what the experiment may "
            f"touch: {shown}; allow and opt in their namespaces (annotation {ALLOW_ANNOTATION}: \"true\")"
            + (", or declare the nodes and namespaces in blastRadius.disturb" if plan.fault == "node-drain" else "")
        )


def _percentages(plan: Plan, floors: list[WorkloadFloor], max_percent: int) -> str | None:
    """Rule 3: the first share over ``max_percent``, described; None when every share is within it."""
    ready_by_key = {f.key: f.ready for f in floors}
    groups: dict[str, list[PodInfo]] = defaultdict(list)
    for pod in plan.hits:
        if pod.ready:
            groups[pod.workload or f"pods of no workload in {pod.namespace}"].append(pod)
    unowned_ready: dict[str, int] = defaultdict(int)
    for pod in plan.targets.ready:
        if not pod.owner:
            unowned_ready[pod.namespace] += 1
    for key, pods in sorted(groups.items()):
        pod = pods[0]
        total = ready_by_key.get(key) if pod.owner else unowned_ready.get(pod.namespace)
        if not total:
            continue
        share = 100.0 * len(pods) / total
        if share > max_percent + 1e-9:
            return (f"the fault would hit {len(pods)} of the {total} ready pods of {key} ({share:.0f}%), more than "
                    f"blastRadius.maxPodsPercent {max_percent}%")
    return None


def apply(
    objects: Objects, policy: safety.ChaosPolicy, plan: Plan, experiment: ChaosExperiment, round_: int = 0
) -> Plan:
    """Rules 1-3 on ``plan``: raises ``RefusedError``, or returns the plan with its floors (and ``skipped``)."""
    if not plan.entries:
        return _skip(plan, "the fault has nothing to act on: no ready pod was picked")
    check_reach(objects, policy, plan, experiment)
    max_percent = experiment.spec.blast_radius.max_pods_percent
    floors = floors_for(objects, plan.hits, experiment) if plan.hits else []
    if not plan.disrupts:
        floors = [f.model_copy(update={"hit": 0}) for f in floors]
    plan.floors = floors
    for floor in floors:
        plan.lines.append(f"floor: {floor.describe()}")
    problem = _percentages(plan, floors, max_percent)
    if problem is None and plan.total_pods:
        share = 100.0 * plan.affected_pods / plan.total_pods
        if share > max_percent + 1e-9:
            problem = (f"the fault would hit {plan.affected_pods} of {plan.total_pods} ready pods ({share:.0f}%), "
                       f"more than blastRadius.maxPodsPercent {max_percent}%")
    if problem is not None:
        if round_ == 0:
            raise RefusedError(f"refused: {problem}")
        return _skip(plan, problem)
    if plan.disrupts:
        crossing = [f for f in floors if f.ready - f.hit < f.floor]
        if crossing:
            f = crossing[0]
            return _skip(plan, f"{f.key} would keep {f.ready - f.hit} ready pod(s), below its floor of {f.floor} "
                               f"({f.ready} of {f.replicas} ready now, {f.hit} to take down)")
    return plan


def _skip(plan: Plan, reason: str) -> Plan:
    """Nothing is injected this round: no entries and no chosen pods (``hits`` keeps what would have been hit)."""
    plan.skipped = f"round skipped: {reason}"
    plan.lines.append(plan.skipped)
    plan.entries = []
    plan.affected_pods = 0
    plan.targets = plan.targets.model_copy(update={"chosen": []})
    return plan
