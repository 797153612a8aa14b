"""Scale down: set the replicas of the chosen pods' Deployments; revert restores the recorded count.

Which pods go is the Deployment controller's choice, so ``Plan.hits`` names as many of the
Deployment's ready pods as the scale-down removes, for the per-workload percentages. A scale-down
is not held to the ready-pod floors (``disrupts`` is false): its declared ``replicas`` is the
experiment's own, deliberate floor.
"""

from __future__ import annotations

from orchestrator.chaos import ledger
from orchestrator.chaos.faults.base import Alive, PlanContext, always
from orchestrator.chaos.models import LedgerEntry, Plan, PodInfo
from orchestrator.chaos.objects import DEPLOYMENT, Objects, ref
from orchestrator.errors import RefusedError
from orchestrator.specs.chaos import ScaleDown

__all__ = ["ScaleDownInjector"]


class ScaleDownInjector:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def plan(self, ctx: PlanContext) -> Plan:
        assert isinstance(ctx.fault, ScaleDown)
        owners = sorted({p.owner for p in ctx.targets.chosen if p.owner and p.owner_kind == "Deployment"})
        if not owners:
            raise RefusedError(
                f"scale-down: no Deployment in {ctx.targets.namespace} owns the pods the selector matches"
            )
        entries: list[LedgerEntry] = []
        lines = []
        affected = 0
        hits: list[PodInfo] = []
        total = len(ctx.targets.ready)
        for name in owners:
            r = ref(DEPLOYMENT, name, ctx.targets.namespace)
            current = int((self.objects.get(r).get("spec") or {}).get("replicas", 1))
            target = min(ctx.fault.replicas, current)
            affected += current - target
            mine = [p for p in ctx.targets.ready if p.owner == name and p.owner_kind == "Deployment"]
            hits += mine[len(mine) - min(len(mine), current - target):]
            entries.append(LedgerEntry(
                run=ctx.run, fault="scale-down", object=r, action={"replicas": target},
                revert={"replicas": current}, expires_at=ctx.expires_at))
            lines.append(f"scale Deployment {ctx.targets.namespace}/{name} from {current} to {target} replicas")
        return Plan(run=ctx.run, fault="scale-down", targets=ctx.targets, entries=entries,
                    affected_pods=affected, total_pods=total, lines=lines, hits=hits,
                    touches=[e.object for e in entries])

    def inject(self, entry: LedgerEntry, alive: Alive = always) -> str:
        replicas = int(entry.action["replicas"])
        if not alive():
            return f"{entry.object} left at its size (the injection was cancelled)"
        # Never change an object whose mark is not ours: the revert could not restore it.
        ledger.write_marked(self.objects, entry, lambda obj: None if (obj.get("spec") or {}).get("replicas")
                            == replicas else {"spec": {"replicas": replicas}})
        return f"scaled {entry.object} to {replicas}"

    def revert(self, entry: LedgerEntry) -> str:
        replicas = int(entry.revert["replicas"])
        done = ledger.restore(self.objects, entry, {"spec": {"replicas": replicas}})
        return f"restored {entry.object} to {replicas} replicas" if done else f"{entry.object} already restored"
