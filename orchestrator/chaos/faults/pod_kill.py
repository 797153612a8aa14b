"""Pod kill: delete the chosen pods; their controller (a Deployment's ReplicaSet, a StatefulSet) replaces them.

Nothing needs restoring, but the fault is still in the ledger: the owning workload (or the pod
itself, for a pod no workload owns) is marked for as long as the experiment runs, so other
experiments and the janitor see it, and revert removes the mark. A repeated kill is a new plan per
round (the workflow asks for one every ``interval``) whose entries name that round's pods.

StatefulSets are killed the way their ordering suggests: with ``ordinal`` the pick is not sampled
but the pod ``<name>-<ordinal>`` of the one StatefulSet the selector matches (``highest``: the pod
a scale-down would remove first; ``lowest``: ordinal 0, often the primary). Only a Ready pod is
picked; when that pod is not Ready the plan has nothing to kill and the blast-radius rules skip it.
"""

from __future__ import annotations

from collections import defaultdict

from orchestrator.chaos import ledger
from orchestrator.chaos.faults.base import Alive, PlanContext, always
from orchestrator.chaos.models import LedgerEntry, ObjectRef, Plan, PodInfo, TargetSet
from orchestrator.chaos.objects import DEPLOYMENT, POD, STATEFULSET, Objects, ref
from orchestrator.chaos.radius import still_disruptable
from orchestrator.errors import ConflictError, RefusedError
from orchestrator.specs.chaos import PodKill

__all__ = ["PodKillInjector", "by_ordinal"]


def _ordinal_of(pod: PodInfo) -> int | None:
    base, _, number = pod.name.rpartition("-")
    return int(number) if pod.owner and base == pod.owner and number.isdigit() else None


def by_ordinal(targets: TargetSet, ordinal: str | int) -> TargetSet:
    """The pick of ``ordinal`` (``highest``, ``lowest`` or a number) in the one StatefulSet the selector matches."""
    members = [p for p in targets.candidates if p.owner_kind == "StatefulSet" and _ordinal_of(p) is not None]
    sets = sorted({p.owner for p in members if p.owner})
    if len(sets) != 1:
        found = ", ".join(sets) or "none"
        raise RefusedError(f"refused: fault.ordinal needs the selector to match the pods of exactly one "
                           f"StatefulSet in {targets.namespace} (found: {found})")
    ordered = sorted(members, key=lambda p: _ordinal_of(p) or 0)
    if ordinal == "highest":
        pick = ordered[-1]
    elif ordinal == "lowest":
        pick = ordered[0]
    else:
        named = [p for p in ordered if _ordinal_of(p) == ordinal]
        if not named:
            raise RefusedError(f"refused: StatefulSet {targets.namespace}/{sets[0]} has no pod {sets[0]}-{ordinal}")
        pick = named[0]
    # A pod that is not ready is not killed: the round then has nothing to do, and is skipped.
    return targets.model_copy(update={"chosen": [pick] if pick.ready else []})


class PodKillInjector:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def plan(self, ctx: PlanContext) -> Plan:
        assert isinstance(ctx.fault, PodKill)
        targets = ctx.targets if ctx.fault.ordinal is None else by_ordinal(ctx.targets, ctx.fault.ordinal)
        by_owner: dict[tuple[str, str] | None, list[str]] = defaultdict(list)
        for pod in targets.chosen:
            by_owner[(pod.owner_kind, pod.owner) if pod.owner else None].append(pod.name)
        entries: list[LedgerEntry] = []
        lines = []
        ns = targets.namespace
        for owner, pods in sorted(by_owner.items(), key=lambda kv: kv[0] or ("", "")):
            action = {"pods": sorted(pods), "gracePeriodSeconds": ctx.fault.grace_period_seconds,
                      "maxUnavailable": ctx.max_unavailable}
            if owner is None:
                for name in sorted(pods):
                    entries.append(LedgerEntry(
                        run=ctx.run, fault="pod-kill", object=ref(POD, name, ns),
                        action={**action, "pods": [name]}, expires_at=ctx.expires_at))
            else:
                kind = STATEFULSET if owner[0] == "StatefulSet" else DEPLOYMENT
                entries.append(LedgerEntry(
                    run=ctx.run, fault="pod-kill", object=ref(kind, owner[1], ns),
                    action=action, expires_at=ctx.expires_at))
            lines.append(f"delete pod(s) {', '.join(sorted(pods))} in {ns}"
                         + (f" ({owner[0]} {owner[1]})" if owner else " (no workload owns them)"))
        if ctx.fault.interval is not None:
            lines.append(f"then pick and delete again every {ctx.fault.interval} for {ctx.duration}")
        return Plan(
            run=ctx.run, fault="pod-kill", targets=targets, entries=entries,
            affected_pods=len(targets.chosen), total_pods=len(targets.ready), lines=lines,
            hits=list(targets.chosen), disrupts=True,
            touches=[e.object for e in entries] + [ref(POD, p.name, ns) for p in targets.chosen
                                                   if p.owner is not None],
        )

    def inject(self, entry: LedgerEntry, alive: Alive = always) -> str:
        grace = int(entry.action.get("gracePeriodSeconds", 0))
        own = entry.action.get("maxUnavailable")
        deleted: list[str] = []
        left: list[str] = []
        for name in entry.action.get("pods", []):
            if not alive():
                left.append(f"{name} (the injection was cancelled)")
                break
            why = self._kill(entry, ref(POD, name, entry.object.namespace), grace, own)
            if why is None:
                deleted.append(name)
            else:
                left.append(f"{name} ({why})")
        note = f"; left {', '.join(left)}" if left else ""
        return f"deleted pod(s) {', '.join(deleted) or '(none)'}{note}"

    def _kill(self, entry: LedgerEntry, pod_ref: ObjectRef, grace: int, own: int | str | None) -> str | None:
        """Delete one pod if it may go now; else why not.

        The readiness and floor read here is the delete's precondition (the pod's uid and
        resourceVersion as read): a pod that changed since is read and judged again.
        """
        for _ in range(3):
            pod = self.objects.get_or_none(pod_ref)
            if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
                return "already gone"
            why = still_disruptable(self.objects, pod, own)
            if why is not None:
                return why
            ledger.marked(self.objects, entry)  # the revert unmarked the workload: stop (RefusedError)
            meta = pod.get("metadata") or {}
            try:
                self.objects.delete(pod_ref, grace_period_seconds=grace, preconditions={
                    "uid": str(meta.get("uid")), "resourceVersion": str(meta.get("resourceVersion"))})
            except ConflictError:
                continue
            return None
        return "kept changing while it was checked"

    def revert(self, entry: LedgerEntry) -> str:
        # Kubernetes brings the pods back; what is ours to undo is the mark (on a pod not yet deleted too).
        done = ledger.restore(self.objects, entry, {})
        return f"unmarked {entry.object}" if done else f"{entry.object} already unmarked"
