"""Network delay/loss/partition, CPU/memory stress and disk I/O faults through Chaos Mesh custom resources.

The orchestrator resolves and limits the pods itself (selector, mode, blast radius, opt-in) and
hands Chaos Mesh the exact pod list (``selector.pods`` with ``mode: all``), so Chaos Mesh's own
selection never widens what the safety rails approved. The CR is created already marked (the
ledger label, expiry and entry), and also carries Chaos Mesh's ``duration`` as a second stop.
Revert deletes it. Without the Chaos Mesh CRDs the plan refuses, naming the missing definition.

A partition has two sides, and both are hit: the far side (``partition``: its own selector, namespace
and mode) is resolved the same way and handed over as an exact pod list too, and its pods are in
``Plan.hits``, so the namespace rails, opt-in and percentages apply to them as to the targets.
"""

from __future__ import annotations

from typing import Any

from orchestrator.chaos import ledger
from orchestrator.chaos.faults.base import Alive, PlanContext, always
from orchestrator.chaos.models import LedgerEntry, Plan, PodInfo
from orchestrator.chaos.objects import IO_CHAOS, NETWORK_CHAOS, STRESS_CHAOS, Kind, Objects, ref
from orchestrator.chaos.targets import choose, resolve_pods
from orchestrator.errors import ConflictError, RefusedError
from orchestrator.specs.chaos import IoChaos, NetworkChaos, StressChaos
from orchestrator.specs.duration import format_duration

__all__ = ["IoChaosInjector", "NetworkChaosInjector", "StressChaosInjector"]


def _pods_selector(pods: list[PodInfo]) -> dict[str, Any]:
    by_ns: dict[str, list[str]] = {}
    for p in pods:
        by_ns.setdefault(p.namespace, []).append(p.name)
    return {"pods": {ns: sorted(names) for ns, names in sorted(by_ns.items())}}


class _ChaosMeshInjector:
    kind: Kind
    fault_type: str

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def _crd(self) -> str:
        return f"{self.kind.plural}.{self.kind.group}"

    def _spec(self, ctx: PlanContext, peers: list[PodInfo]) -> dict[str, Any]:
        raise NotImplementedError

    def _describe(self, ctx: PlanContext) -> str:
        raise NotImplementedError

    def _peers(self, ctx: PlanContext) -> list[PodInfo]:
        """Pods hit besides the chosen targets (the far side of a partition); none by default."""
        return []

    def plan(self, ctx: PlanContext) -> Plan:
        if not self.objects.crd_installed(self._crd()):
            raise RefusedError(
                f"{self.fault_type} needs Chaos Mesh, which is not installed: "
                f"CustomResourceDefinition {self._crd()} not found"
            )
        pods = [p.name for p in ctx.targets.chosen]
        peers = self._peers(ctx)
        spec = {
            **self._spec(ctx, peers),
            "mode": "all",
            "selector": {"pods": {ctx.targets.namespace: pods}},
            "duration": format_duration(ctx.duration),
        }
        entry = LedgerEntry(
            run=ctx.run, fault=self.fault_type, object=ref(self.kind, ctx.run, ctx.targets.namespace),
            creates=True, action={"spec": spec}, expires_at=ctx.expires_at,
        )
        lines = [f"create {self.kind.kind} {ctx.targets.namespace}/{ctx.run}: {self._describe(ctx)} "
                 f"on pod(s) {', '.join(pods)}"]
        if peers:
            lines.append(f"the other side of the partition: {len(peers)} pod(s): {', '.join(map(str, peers))}")
        return Plan(
            run=ctx.run, fault=self.fault_type, targets=ctx.targets, entries=[entry],
            affected_pods=len(pods), total_pods=len(ctx.targets.ready), lines=lines,
            hits=[*ctx.targets.chosen, *peers], touches=[entry.object],
        )

    def inject(self, entry: LedgerEntry, alive: Alive = always) -> str:
        if not alive():
            return f"{entry.object} not created (the injection was cancelled)"
        body = {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {"name": entry.object.name, "namespace": entry.object.namespace, **ledger.marks(entry)},
            "spec": entry.action["spec"],
        }
        try:
            self.objects.create(entry.object, body)
        except ConflictError:
            existing = self.objects.get(entry.object)
            if ledger.owner_of(existing) != entry.run:
                raise RefusedError(f"{entry.object} exists and is not this run's") from None
            return f"{entry.object} already created"
        return f"created {entry.object}"

    def revert(self, entry: LedgerEntry) -> str:
        existing = self.objects.get_or_none(entry.object)
        if existing is None or ledger.owner_of(existing) != entry.run:
            return f"{entry.object} already deleted"
        self.objects.delete(entry.object)
        return f"deleted {entry.object}"


class NetworkChaosInjector(_ChaosMeshInjector):
    kind = NETWORK_CHAOS
    fault_type = "network-chaos"

    def _peers(self, ctx: PlanContext) -> list[PodInfo]:
        fault = ctx.fault
        assert isinstance(fault, NetworkChaos)
        if fault.partition is None:
            return []
        peer = fault.partition
        ns = peer.namespace or ctx.targets.namespace
        chosen = {(p.namespace, p.name) for p in ctx.targets.chosen}
        # The targets themselves are never their own far side.
        pods = [p for p in resolve_pods(self.objects, ns, peer.selector) if (p.namespace, p.name) not in chosen]
        picked = choose(pods, peer.mode, ctx.targets.seed)
        if not picked:
            raise RefusedError(f"refused: the partition's other side {peer.selector} matches no ready pod in {ns}")
        return picked

    def _spec(self, ctx: PlanContext, peers: list[PodInfo]) -> dict[str, Any]:
        fault = ctx.fault
        assert isinstance(fault, NetworkChaos)
        spec: dict[str, Any] = {"action": fault.action, "direction": fault.direction}
        if peers:
            spec["target"] = {"mode": "all", "selector": _pods_selector(peers)}
        if fault.delay is not None:
            spec["delay"] = fault.delay.model_dump(by_alias=True)
        if fault.loss is not None:
            spec["loss"] = fault.loss.model_dump(by_alias=True)
        return spec

    def _describe(self, ctx: PlanContext) -> str:
        fault = ctx.fault
        assert isinstance(fault, NetworkChaos)
        if fault.delay is not None:
            return f"network delay {fault.delay.latency} (jitter {fault.delay.jitter})"
        if fault.partition is not None:
            return f"network partition (direction {fault.direction})"
        assert fault.loss is not None
        return f"network loss {fault.loss.loss}%"


class StressChaosInjector(_ChaosMeshInjector):
    kind = STRESS_CHAOS
    fault_type = "stress-chaos"

    def _spec(self, ctx: PlanContext, peers: list[PodInfo]) -> dict[str, Any]:
        fault = ctx.fault
        assert isinstance(fault, StressChaos)
        stressors: dict[str, Any] = {}
        if fault.cpu is not None:
            stressors["cpu"] = fault.cpu.model_dump(by_alias=True)
        if fault.memory is not None:
            stressors["memory"] = fault.memory.model_dump(by_alias=True)
        return {"stressors": stressors}

    def _describe(self, ctx: PlanContext) -> str:
        fault = ctx.fault
        assert isinstance(fault, StressChaos)
        parts = []
        if fault.cpu is not None:
            parts.append(f"cpu {fault.cpu.workers} worker(s) at {fault.cpu.load}%")
        if fault.memory is not None:
            parts.append(f"memory {fault.memory.workers} worker(s) of {fault.memory.size}")
        return "stress " + ", ".join(parts)


class IoChaosInjector(_ChaosMeshInjector):
    kind = IO_CHAOS
    fault_type = "io-chaos"

    def _spec(self, ctx: PlanContext, peers: list[PodInfo]) -> dict[str, Any]:
        fault = ctx.fault
        assert isinstance(fault, IoChaos)
        spec: dict[str, Any] = {"action": fault.action, "volumePath": fault.volume_path, "percent": fault.percent}
        if fault.path is not None:
            spec["path"] = fault.path
        if fault.delay is not None:
            spec["delay"] = fault.delay
        if fault.errno is not None:
            spec["errno"] = fault.errno
        if fault.methods:
            spec["methods"] = list(fault.methods)
        if fault.container is not None:
            spec["containerNames"] = [fault.container]
        return spec

    def _describe(self, ctx: PlanContext) -> str:
        fault = ctx.fault
        assert isinstance(fault, IoChaos)
        where = fault.path or fault.volume_path
        what = f"I/O latency {fault.delay}" if fault.action == "latency" else f"I/O errors (errno {fault.errno})"
        return f"{what} on {fault.percent}% of calls under {where}"
