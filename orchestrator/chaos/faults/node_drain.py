"""Node drain: cordon the nodes running the chosen pods, then evict their pods.

Evictions go through the ``pods/eviction`` subresource, so PodDisruptionBudgets decide: a refused
eviction (429) is retried until ``evictionTimeout``, then left in place and reported; the node
stays cordoned either way until revert. Like ``kubectl drain --ignore-daemonsets``, DaemonSet pods
and mirror pods are not evicted, and pods in protected namespaces are never touched. Evicted pods
are rescheduled by their controllers; revert restores the node's recorded ``unschedulable``.

The cordon is conditional on the node as read with the run's mark, and before each eviction the node
must still carry that mark and the pod must still be Ready with its workload above its floor (the
eviction is conditional on the pod as read). The loop asks ``alive()`` (a heartbeat) before each
eviction and each wait: a cancelled drain stops there, so no eviction follows the revert.

A drain reaches far beyond its target: it evicts every other pod on the node, in every namespace.
The plan therefore lists each pod it would evict (``Plan.hits``, one line per node naming them all),
and the blast-radius rules (``orchestrator.chaos.radius``) hold every one of them to the namespace
rails, the ready-pod floors of their workloads and the percentages, not only the chosen targets.
"""

from __future__ import annotations

import time
from typing import Any

from orchestrator.chaos import ledger
from orchestrator.chaos.faults.base import Alive, PlanContext, always
from orchestrator.chaos.models import LedgerEntry, Plan, PodInfo
from orchestrator.chaos.objects import NODE, POD, Objects, ref
from orchestrator.chaos.radius import pod_infos, still_disruptable
from orchestrator.errors import KubeError, RefusedError
from orchestrator.kube.client import kube_errors, read_json
from orchestrator.specs.chaos import NodeDrain

__all__ = ["NodeDrainInjector"]


def _skippable(pod: dict[str, Any], protected: set[str]) -> bool:
    meta = pod.get("metadata") or {}
    if meta.get("namespace") in protected or meta.get("deletionTimestamp"):
        return True
    if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
        return True
    return any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or [])


class NodeDrainInjector:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def _pods_on(self, node: str) -> list[dict[str, Any]]:
        with kube_errors(f"list pods on node {node}", self.objects.api_client):
            resp = self.objects.core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node}", _preload_content=False,
            )
        return [p for p in read_json(resp).get("items") or [] if isinstance(p, dict)]

    def plan(self, ctx: PlanContext) -> Plan:
        fault = ctx.fault
        assert isinstance(fault, NodeDrain)
        nodes = sorted({p.node for p in ctx.targets.chosen if p.node})
        if not nodes:
            raise RefusedError("node-drain: none of the chosen pods is scheduled on a node")
        candidates = {p.name for p in ctx.targets.candidates}
        entries: list[LedgerEntry] = []
        lines: list[str] = []
        hits: list[PodInfo] = []
        affected = 0
        for node in nodes:
            r = ref(NODE, node)
            obj = self.objects.get(r)
            raw = [p for p in self._pods_on(node) if not _skippable(p, set(ctx.protected_namespaces))]
            pods = sorted(pod_infos(self.objects, raw), key=lambda p: (p.namespace, p.name))
            hits += pods
            affected += sum(1 for p in pods if p.namespace == ctx.targets.namespace and p.name in candidates
                            and p.ready)
            entries.append(LedgerEntry(
                run=ctx.run, fault="node-drain", object=r,
                action={"evictionTimeoutSeconds": fault.eviction_timeout.total_seconds(),
                        "protected": sorted(ctx.protected_namespaces), "maxUnavailable": ctx.max_unavailable,
                        # Only what the rails approved is evicted: a pod that lands in between stays.
                        "pods": [str(p) for p in pods]},
                revert={"unschedulable": bool((obj.get("spec") or {}).get("unschedulable", False))},
                expires_at=ctx.expires_at))
            names = ", ".join(str(p) + ("" if p.ready else " (not ready)") for p in pods)
            lines.append(f"cordon node {node}, then evict {len(pods)} pod(s) in every namespace: {names or '(none)'}")
        return Plan(run=ctx.run, fault="node-drain", targets=ctx.targets, entries=entries,
                    affected_pods=affected, total_pods=len(ctx.targets.ready), lines=lines,
                    hits=hits, disrupts=True,
                    touches=[e.object for e in entries] + [ref(POD, p.name, p.namespace) for p in hits])

    def inject(self, entry: LedgerEntry, alive: Alive = always) -> str:
        if not alive():
            return f"{entry.object.name} left as it was (the injection was cancelled)"
        # The cordon is preconditioned on the read that found the mark: it never lands after the revert's unmark.
        ledger.write_marked(self.objects, entry, lambda node: None if (node.get("spec") or {}).get("unschedulable")
                            else {"spec": {"unschedulable": True}})
        protected = set(entry.action.get("protected") or [])
        own = entry.action.get("maxUnavailable")
        deadline = time.monotonic() + float(entry.action.get("evictionTimeoutSeconds", 30))
        evicted: list[str] = []
        approved = set(entry.action["pods"]) if "pods" in entry.action else None
        unplanned: set[str] = set()
        kept: dict[str, str] = {}
        stopped = ""
        while True:
            refused: list[str] = []
            for pod in self._pods_on(entry.object.name):
                if _skippable(pod, protected):
                    continue
                ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
                if approved is not None and f"{ns}/{name}" not in approved:
                    unplanned.add(f"{ns}/{name}")
                    continue
                if not alive():
                    stopped = "; stopped: the injection was cancelled"
                    break
                # Right before each eviction: still this run's node (else the revert won: RefusedError),
                # and the pod still ready with its workload above its floor.
                ledger.marked(self.objects, entry)
                why = still_disruptable(self.objects, pod, own)
                if why is not None:
                    kept[f"{ns}/{name}"] = why
                    continue
                kept.pop(f"{ns}/{name}", None)
                try:
                    self.objects.evict(ns, name, preconditions={
                        "uid": str(pod["metadata"].get("uid")),
                        "resourceVersion": str(pod["metadata"].get("resourceVersion"))})
                    evicted.append(f"{ns}/{name}")
                except KubeError as exc:
                    if exc.status == 404:
                        continue
                    if exc.status not in (409, 429):  # 409: the pod changed since it was read; look again
                        raise
                    refused.append(f"{ns}/{name}")
            if stopped or not refused or time.monotonic() > deadline:
                break
            if not alive():
                stopped = "; stopped: the injection was cancelled"
                break
            time.sleep(0.5)
        note = f"; a PodDisruptionBudget kept {', '.join(refused)}" if refused and not stopped else ""
        if kept:
            note += "; kept " + ", ".join(f"{pod} ({why})" for pod, why in sorted(kept.items()))
        if unplanned:
            note += f"; left {', '.join(sorted(unplanned))} (not in the approved plan)"
        return f"cordoned {entry.object.name}, evicted {len(evicted)} pod(s){note}{stopped}"

    def revert(self, entry: LedgerEntry) -> str:
        was = bool(entry.revert.get("unschedulable", False))
        # null removes the field, which is how an uncordoned node looks.
        done = ledger.restore(self.objects, entry, {"spec": {"unschedulable": True if was else None}})
        return f"uncordoned {entry.object.name}" if done else f"{entry.object} already restored"
