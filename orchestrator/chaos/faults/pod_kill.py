"""Pod kill: delete the chosen pods; their controller (a Deployment's ReplicaSet) replaces them.

Nothing needs restoring, but the fault is still in the ledger: the owning Deployment (or the pod
itself, for a pod no Deployment owns) is marked for as long as the experiment runs, so other
experiments and the janitor see it, and revert removes the mark. A repeated kill is a new plan per
round (the workflow asks for one every ``interval``) whose entries name that round's pods.
"""

from __future__ import annotations

from collections import defaultdict

from orchestrator.chaos import ledger
from orchestrator.chaos.faults.base import PlanContext
from orchestrator.chaos.models import LedgerEntry, Plan
from orchestrator.chaos.objects import DEPLOYMENT, POD, Objects, ref
from orchestrator.specs.chaos import PodKill

__all__ = ["PodKillInjector"]


class PodKillInjector:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def plan(self, ctx: PlanContext) -> Plan:
        assert isinstance(ctx.fault, PodKill)
        by_owner: dict[str | None, list[str]] = defaultdict(list)
        for pod in ctx.targets.chosen:
            by_owner[pod.owner].append(pod.name)
        entries: list[LedgerEntry] = []
        lines = []
        for owner, pods in sorted(by_owner.items(), key=lambda kv: kv[0] or ""):
            action = {"pods": sorted(pods), "gracePeriodSeconds": ctx.fault.grace_period_seconds}
            if owner is None:
                for name in sorted(pods):
                    entries.append(LedgerEntry(
                        run=ctx.run, fault="pod-kill", object=ref(POD, name, ctx.targets.namespace),
                        action={**action, "pods": [name]}, expires_at=ctx.expires_at))
            else:
                entries.append(LedgerEntry(
                    run=ctx.run, fault="pod-kill", object=ref(DEPLOYMENT, owner, ctx.targets.namespace),
                    action=action, expires_at=ctx.expires_at))
            lines.append(f"delete pod(s) {', '.join(sorted(pods))} in {ctx.targets.namespace}"
                         + (f" (Deployment {owner})" if owner else " (no Deployment owns them)"))
        if ctx.fault.interval is not None:
            lines.append(f"then pick and delete again every {ctx.fault.interval} for {ctx.duration}")
        return Plan(
            run=ctx.run, fault="pod-kill", targets=ctx.targets, entries=entries,
            affected_pods=len(ctx.targets.chosen), total_pods=len(ctx.targets.candidates), lines=lines,
        )

    def inject(self, entry: LedgerEntry) -> str:
        grace = int(entry.action.get("gracePeriodSeconds", 0))
        deleted = [
            name for name in entry.action.get("pods", [])
            if self.objects.delete(ref(POD, name, entry.object.namespace), grace_period_seconds=grace)
        ]
        return f"deleted pod(s) {', '.join(deleted) or '(already gone)'}"

    def revert(self, entry: LedgerEntry) -> str:
        # Kubernetes brings the pods back; what is ours to undo is the mark (on a pod not yet deleted too).
        done = ledger.restore(self.objects, entry, {})
        return f"unmarked {entry.object}" if done else f"{entry.object} already unmarked"
