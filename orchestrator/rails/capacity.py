"""The capacity-headroom rail: the canary's and baseline's pods must fit before they are created.

A canary whose pods cannot be admitted or scheduled does not fail fast on a real cluster: the
ReplicaSet keeps retrying against a ResourceQuota ("exceeded quota", HTTP 403) and the scheduler
leaves pods Pending ("Insufficient cpu") until the progress deadline. So before anything starts,
this rail adds up what the new pods request and compares it, with numbers, to

* every ResourceQuota of the namespace: ``hard`` minus ``used`` (from the quota's status, as the
  quota controller keeps it) for ``pods``, ``requests.cpu``/``cpu``, ``requests.memory``/``memory``,
  ``limits.cpu`` and ``limits.memory``; a quota that tracks a resource the template does not
  request refuses too (the API server would reject such pods);
* the nodes' allocatable resources: ready, schedulable nodes matching the template's nodeSelector,
  minus what their pods request, filled pod by pod (most free CPU first), as a scheduler would.

How many pods: ``canaryReplicas`` when given, else what the canary workflow creates (the stable's
replica count, or with replica routing as many as the highest ``setWeight`` needs), the same
again for a baseline. Listing nodes needs cluster-wide read rights; without them that half is
reported as not checked rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from orchestrator.errors import KubeError, NotFoundError
from orchestrator.rails.cluster import ClusterReader, Obj, meta
from orchestrator.rails.models import RailStatus, Verdict
from orchestrator.specs.canary import CanaryRollout, ReplicasRouting, SetWeightStep

__all__ = ["CAPACITY", "Resources", "capacity", "pod_resources", "pods_needed"]

CAPACITY = "capacity"
_QUOTA_KEYS = {
    "pods": "pods", "requests.cpu": "req_cpu", "cpu": "req_cpu", "requests.memory": "req_mem",
    "memory": "req_mem", "limits.cpu": "lim_cpu", "limits.memory": "lim_mem",
}


@dataclass
class Resources:
    req_cpu: Decimal = Decimal(0)
    req_mem: Decimal = Decimal(0)
    lim_cpu: Decimal = Decimal(0)
    lim_mem: Decimal = Decimal(0)
    pods: Decimal = Decimal(0)
    has_req_cpu: bool = False
    has_req_mem: bool = False
    has_lim_cpu: bool = False
    has_lim_mem: bool = False

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.req_cpu + other.req_cpu, self.req_mem + other.req_mem, self.lim_cpu + other.lim_cpu,
            self.lim_mem + other.lim_mem, self.pods + other.pods,
            self.has_req_cpu and other.has_req_cpu, self.has_req_mem and other.has_req_mem,
            self.has_lim_cpu and other.has_lim_cpu, self.has_lim_mem and other.has_lim_mem,
        )

    def times(self, n: int) -> Resources:
        k = Decimal(n)
        return Resources(self.req_cpu * k, self.req_mem * k, self.lim_cpu * k, self.lim_mem * k, self.pods * k,
                         self.has_req_cpu, self.has_req_mem, self.has_lim_cpu, self.has_lim_mem)

    def get(self, field: str) -> Decimal:
        value: Decimal = getattr(self, field)
        return value


def _q(value: Any) -> Decimal:
    return Decimal(parse_quantity(str(value)))


def fmt(field: str, value: Decimal) -> str:
    if field.endswith("cpu"):
        return f"{int(value * 1000)}m"
    if field.endswith("mem"):
        return f"{value / (1024 * 1024):.0f}Mi"
    return f"{int(value)}"


_NAMES = {"req_cpu": "requests.cpu", "req_mem": "requests.memory", "lim_cpu": "limits.cpu",
          "lim_mem": "limits.memory", "pods": "pods"}


def pod_resources(pod_spec: dict[str, Any]) -> Resources:
    """What one pod counts for: the sum over its containers (a missing request counts as 0 and is noted)."""
    out = Resources(pods=Decimal(1), has_req_cpu=True, has_req_mem=True, has_lim_cpu=True, has_lim_mem=True)
    for container in pod_spec.get("containers") or []:
        res = container.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        # A container with limits but no requests gets requests equal to its limits (API server default).
        req = {**lim, **req}
        for key, field, flag in (("cpu", "req_cpu", "has_req_cpu"), ("memory", "req_mem", "has_req_mem")):
            if key in req:
                setattr(out, field, out.get(field) + _q(req[key]))
            else:
                setattr(out, flag, False)
        for key, field, flag in (("cpu", "lim_cpu", "has_lim_cpu"), ("memory", "lim_mem", "has_lim_mem")):
            if key in lim:
                setattr(out, field, out.get(field) + _q(lim[key]))
            else:
                setattr(out, flag, False)
    return out


def pods_needed(rollout: CanaryRollout, stable_replicas: int) -> tuple[int, int]:
    """(canary pods, baseline pods) the rollout creates at its largest."""
    spec = rollout.spec
    if spec.canary_replicas is not None:
        canary = spec.canary_replicas
    elif isinstance(spec.traffic, ReplicasRouting):
        sizes = [1]
        for step in spec.steps:
            if isinstance(step, SetWeightStep):
                weight = step.set_weight
                # A percentage of the stable's pods, or (setWeight: {replicas: N}) N pods.
                sizes.append(math.ceil(stable_replicas * weight / 100) if isinstance(weight, int)
                             else int(getattr(weight, "replicas", 0)))
        canary = max(sizes)
    else:
        canary = max(1, stable_replicas)
    return canary, canary if spec.baseline else 0


def _active(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed") and not meta(pod).get(
        "deletionTimestamp")


def _used(pods: list[Obj]) -> Resources:
    total = Resources()
    for pod in pods:
        if _active(pod):
            total = total + pod_resources(pod.get("spec") or {})
    return total


def _quota_problems(quotas: list[Obj], need: Resources, pods: list[Obj], what: str) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    fine: list[str] = []
    used_by_pods: Resources | None = None
    for quota in quotas:
        name = meta(quota).get("name")
        status = quota.get("status") or {}
        hard = status.get("hard") or (quota.get("spec") or {}).get("hard") or {}
        used = status.get("used") or {}
        for key, raw in sorted(hard.items()):
            field = _QUOTA_KEYS.get(key)
            if field is None:
                continue
            flag = {"req_cpu": need.has_req_cpu, "req_mem": need.has_req_mem, "lim_cpu": need.has_lim_cpu,
                    "lim_mem": need.has_lim_mem}.get(field, True)
            if not flag:
                problems.append(f"quota {name} tracks {key} but the pod template does not set it "
                                "(the API server rejects such pods)")
                continue
            if key in used:
                in_use = _q(used[key])
            else:
                used_by_pods = used_by_pods or _used(pods)
                in_use = used_by_pods.get(field)
            free = _q(raw) - in_use
            wanted = need.get(field)
            line = (f"quota {name} {key}: {what} need {fmt(field, wanted)}, free {fmt(field, free)} "
                    f"(hard {fmt(field, _q(raw))}, used {fmt(field, in_use)})")
            (problems if wanted > free else fine).append(line)
    return problems, fine


def _node_fit(nodes: list[Obj], pods: list[Obj], one: Resources, count: int,
              node_selector: dict[str, str]) -> tuple[int, list[str]]:
    """How many of ``count`` identical pods fit, and each usable node's free resources."""
    free: dict[str, list[Decimal]] = {}
    for node in nodes:
        name = str(meta(node).get("name"))
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        ready = [c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
        if ready and ready[0].get("status") != "True":
            continue
        labels = meta(node).get("labels") or {}
        if not all(labels.get(k) == v for k, v in node_selector.items()):
            continue
        alloc = (node.get("status") or {}).get("allocatable") or {}
        free[name] = [_q(alloc.get("cpu", 0)), _q(alloc.get("memory", 0)), _q(alloc.get("pods", 110))]
    for pod in pods:
        node_name = (pod.get("spec") or {}).get("nodeName")
        if node_name in free and _active(pod):
            r = pod_resources(pod.get("spec") or {})
            slot = free[node_name]
            slot[0] -= r.req_cpu
            slot[1] -= r.req_mem
            slot[2] -= 1
    shown = [f"{n}: cpu {fmt('cpu', f[0])}, memory {fmt('mem', f[1])}, pods {int(f[2])}"
             for n, f in sorted(free.items())]
    placed = 0
    for _ in range(count):
        fits = [n for n, f in free.items() if f[0] >= one.req_cpu and f[1] >= one.req_mem and f[2] >= 1]
        if not fits:
            break
        best = max(fits, key=lambda n: (free[n][0], free[n][1]))
        free[best][0] -= one.req_cpu
        free[best][1] -= one.req_mem
        free[best][2] -= 1
        placed += 1
    return placed, shown


def capacity(cluster: ClusterReader, rollout: CanaryRollout) -> Verdict:
    target = rollout.spec.target
    try:
        stable = cluster.deployment(target.namespace, target.deployment)
    except NotFoundError:
        return Verdict(rail=CAPACITY, status=RailStatus.REFUSED,
                       reason=f"Deployment {target.namespace}/{target.deployment} not found: nothing to copy")
    replicas = int((stable.get("spec") or {}).get("replicas", 1))
    pod_spec = ((stable.get("spec") or {}).get("template") or {}).get("spec") or {}
    canary, baseline = pods_needed(rollout, replicas)
    count = canary + baseline
    one = pod_resources(pod_spec)
    need = one.times(count)
    what = f"canary {canary} + baseline {baseline} pods" if baseline else f"{canary} canary pod(s)"
    each = f"requests cpu {fmt('cpu', one.req_cpu)}, memory {fmt('mem', one.req_mem)} each"
    pods = cluster.pods(target.namespace)
    problems, fine = _quota_problems(cluster.quotas(target.namespace), need, pods, what)
    if problems:
        return Verdict(rail=CAPACITY, status=RailStatus.REFUSED, reason=f"{problems[0]} ({each})")
    try:
        nodes = cluster.nodes()
        all_pods = cluster.pods()
    except KubeError as exc:
        if exc.status != 403:
            raise
        fine.append("node allocatable not checked: no permission to list nodes or pods cluster-wide")
        return Verdict(rail=CAPACITY, status=RailStatus.OK, reason=f"{what} ({each}); " + "; ".join(fine))
    placed, shown = _node_fit(nodes, all_pods, one, count, dict(pod_spec.get("nodeSelector") or {}))
    if placed < count:
        return Verdict(
            rail=CAPACITY, status=RailStatus.REFUSED,
            reason=f"{count - placed} of {what} would stay Pending ({each}); free allocatable: "
                   + ("; ".join(shown) or "no ready schedulable node"),
        )
    fine.append(f"all {count} fit on {len(shown)} node(s)")
    return Verdict(rail=CAPACITY, status=RailStatus.OK, reason=f"{what} ({each}); " + "; ".join(fine))
