"""Resources in the sandbox cluster: ResourceQuota admission and usage, node allocatable for the scheduler.

What a real cluster does, and so what this does:

* **Quota admission** (the ``ResourceQuota`` admission plugin): creating a pod in a namespace with quotas
  is refused with HTTP 403 ``Forbidden`` — ``pods "x" is forbidden: exceeded quota: q, requested: ...,
  used: ..., limited: ...`` — when it would take a tracked resource past ``hard``, and with ``failed quota:
  q: must specify requests.cpu`` when the quota tracks a resource the pod does not set. A Deployment's
  pods that are refused are simply not created; the Deployment reports ``ReplicaFailure``.
* **Quota status** (the quota controller): ``status.hard`` mirrors ``spec.hard`` and ``status.used`` sums
  the namespace's non-terminated pods.
* **Scheduling**: a pod goes only to a node whose ``allocatable`` cpu, memory and pod count, minus what the
  pods already bound there request, still hold its requests; otherwise it stays Pending (Unschedulable).

Quantities are parsed with the official client's ``parse_quantity``, so "500m", "1", "256Mi", "1G" mean what
they mean to Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from orchestrator.sandbox.apiserver_resources import ApiError

Obj = dict[str, Any]

# Quota resource names and the pod figure each limits.
_TRACKED = ("pods", "requests.cpu", "cpu", "requests.memory", "memory", "limits.cpu", "limits.memory")


def quantity(value: Any) -> Decimal:
    return Decimal(parse_quantity(str(value)))


def _fmt(name: str, value: Decimal) -> str:
    if name.endswith("cpu"):
        return str(int(value)) if value == value.to_integral_value() else f"{int(value * 1000)}m"
    if name.endswith("memory"):
        mib = value / (1024 * 1024)
        return f"{int(mib)}Mi" if mib == mib.to_integral_value() else f"{int(value)}"
    return str(int(value))


def terminated(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_usage(pod: Obj) -> dict[str, Decimal | None]:
    """What one pod counts for, per quota resource name; None where a container leaves it unset."""
    usage: dict[str, Decimal | None] = {"pods": Decimal(1)}
    for prefix, part in (("requests", "requests"), ("limits", "limits")):
        for res in ("cpu", "memory"):
            total: Decimal | None = Decimal(0)
            for container in (pod.get("spec") or {}).get("containers") or []:
                resources = container.get("resources") or {}
                values = resources.get(part) or {}
                if part == "requests":
                    values = {**(resources.get("limits") or {}), **values}  # requests default to limits
                if res in values and total is not None:
                    total += quantity(values[res])
                else:
                    total = None
            usage[f"{prefix}.{res}"] = total
    usage["cpu"], usage["memory"] = usage["requests.cpu"], usage["requests.memory"]
    return usage


def requests_of(pod: Obj) -> tuple[Decimal, Decimal]:
    """(cpu, memory) the scheduler reserves for the pod; unset requests reserve nothing."""
    usage = pod_usage(pod)
    return usage["requests.cpu"] or Decimal(0), usage["requests.memory"] or Decimal(0)


def used(hard: Obj, pods: Iterable[Obj]) -> dict[str, Decimal]:
    out = {name: Decimal(0) for name in hard if name in _TRACKED}
    for pod in pods:
        if terminated(pod):
            continue
        usage = pod_usage(pod)
        for name in out:
            out[name] += usage.get(name) or Decimal(0)
    return out


def quota_status(quota: Obj, pods: Iterable[Obj]) -> Obj:
    hard = dict((quota.get("spec") or {}).get("hard") or {})
    return {"hard": hard, "used": {k: _fmt(k, v) for k, v in used(hard, pods).items()}}


def admit_pod(pod: Obj, quotas: Iterable[Obj], pods: list[Obj]) -> None:
    """Raise the API server's 403 when ``pod`` does not fit one of the namespace's quotas."""
    name = (pod.get("metadata") or {}).get("name", "")
    usage = pod_usage(pod)
    for quota in quotas:
        qname = (quota.get("metadata") or {}).get("name", "")
        hard = {k: v for k, v in ((quota.get("spec") or {}).get("hard") or {}).items() if k in _TRACKED}
        missing = sorted(k for k in hard if usage.get(k) is None)
        if missing:
            raise ApiError(403, f'pods "{name}" is forbidden: failed quota: {qname}: must specify '
                                + ",".join(missing), reason="Forbidden")
        in_use = used(hard, pods)
        over = [k for k in sorted(hard) if in_use[k] + (usage[k] or Decimal(0)) > quantity(hard[k])]
        if over:
            requested = ",".join(f"{k}={_fmt(k, usage[k] or Decimal(0))}" for k in over)
            now = ",".join(f"{k}={_fmt(k, in_use[k])}" for k in over)
            limited = ",".join(f"{k}={hard[k]}" for k in over)
            raise ApiError(403, f'pods "{name}" is forbidden: exceeded quota: {qname}, requested: {requested}, '
                                f"used: {now}, limited: {limited}", reason="Forbidden")


def fits(node: Obj, bound: Iterable[Obj], pod: Obj) -> str | None:
    """None when ``pod`` fits ``node`` next to the pods ``bound`` to it; else the scheduler's reason."""
    alloc = (node.get("status") or {}).get("allocatable") or {}
    cpu, mem = requests_of(pod)
    used_cpu, used_mem, count = Decimal(0), Decimal(0), 0
    for other in bound:
        if terminated(other):
            continue
        c, m = requests_of(other)
        used_cpu, used_mem, count = used_cpu + c, used_mem + m, count + 1
    if "pods" in alloc and count + 1 > quantity(alloc["pods"]):
        return "Too many pods"
    if "cpu" in alloc and used_cpu + cpu > quantity(alloc["cpu"]):
        return "Insufficient cpu"
    if "memory" in alloc and used_mem + mem > quantity(alloc["memory"]):
        return "Insufficient memory"
    return None
