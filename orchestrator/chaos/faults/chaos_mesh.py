"""Network delay/loss and CPU/memory stress through Chaos Mesh custom resources.

The orchestrator resolves and limits the pods itself (selector, mode, blast radius, opt-in) and
hands Chaos Mesh the exact pod list (``selector.pods`` with ``mode: all``), so Chaos Mesh's own
selection never widens what the safety rails approved. The CR is created already marked (the
ledger label, expiry and entry), and also carries Chaos Mesh's ``duration`` as a second stop.
Revert deletes it. Without the Chaos Mesh CRDs the plan refuses, naming the missing definition.
"""

from __future__ import annotations

from typing import Any

from orchestrator.chaos import ledger
from orchestrator.chaos.faults.base import PlanContext
from orchestrator.chaos.models import LedgerEntry, Plan
from orchestrator.chaos.objects import NETWORK_CHAOS, STRESS_CHAOS, Kind, Objects, ref
from orchestrator.errors import ConflictError, RefusedError
from orchestrator.specs.chaos import NetworkChaos, StressChaos
from orchestrator.specs.duration import format_duration

__all__ = ["NetworkChaosInjector", "StressChaosInjector"]


class _ChaosMeshInjector:
    kind: Kind
    fault_type: str

    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def _crd(self) -> str:
        return f"{self.kind.plural}.{self.kind.group}"

    def _spec(self, ctx: PlanContext) -> dict[str, Any]:
        raise NotImplementedError

    def _describe(self, ctx: PlanContext) -> str:
        raise NotImplementedError

    def plan(self, ctx: PlanContext) -> Plan:
        if not self.objects.crd_installed(self._crd()):
            raise RefusedError(
                f"{self.fault_type} needs Chaos Mesh, which is not installed: "
                f"CustomResourceDefinition {self._crd()} not found"
            )
        pods = [p.name for p in ctx.targets.chosen]
        spec = {
            **self._spec(ctx),
            "mode": "all",
            "selector": {"pods": {ctx.targets.namespace: pods}},
            "duration": format_duration(ctx.duration),
        }
        entry = LedgerEntry(
            run=ctx.run, fault=self.fault_type, object=ref(self.kind, ctx.run, ctx.targets.namespace),
            creates=True, action={"spec": spec}, expires_at=ctx.expires_at,
        )
        return Plan(
            run=ctx.run, fault=self.fault_type, targets=ctx.targets, entries=[entry],
            affected_pods=len(pods), total_pods=len(ctx.targets.candidates),
            lines=[f"create {self.kind.kind} {ctx.targets.namespace}/{ctx.run}: {self._describe(ctx)} "
                   f"on pod(s) {', '.join(pods)}"],
        )

    def inject(self, entry: LedgerEntry) -> str:
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

    def _spec(self, ctx: PlanContext) -> dict[str, Any]:
        fault = ctx.fault
        assert isinstance(fault, NetworkChaos)
        spec: dict[str, Any] = {"action": fault.action, "direction": "to"}
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
        assert fault.loss is not None
        return f"network loss {fault.loss.loss}%"


class StressChaosInjector(_ChaosMeshInjector):
    kind = STRESS_CHAOS
    fault_type = "stress-chaos"

    def _spec(self, ctx: PlanContext) -> dict[str, Any]:
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
