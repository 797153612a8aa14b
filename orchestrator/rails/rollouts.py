"""The recent-deployments rail: no experiment on a workload that rolled out within the quiet period.

Whoever rolled it out (this orchestrator, a CD system, someone with kubectl), the cluster shows it:

* a rollout still in progress: ``metadata.generation`` ahead of ``status.observedGeneration``, fewer
  ``updatedReplicas`` than ``replicas``, or a StatefulSet whose ``currentRevision`` differs from its
  ``updateRevision``;
* when the last one happened: the newest ReplicaSet a Deployment owns (its ``creationTimestamp`` is the
  moment that template was first rolled out) and the ``Progressing`` condition's ``lastUpdateTime`` (set
  as a rollout progresses and when it completes). The later of the two counts.

A quiet period of 0 turns the rail off (the sandbox's policy does, so its demo can run an experiment
right after its canary).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.rails.cluster import ClusterReader, Obj, meta, template_labels
from orchestrator.rails.models import RailStatus, RailTarget, Verdict
from orchestrator.specs.duration import format_duration
from orchestrator.specs.policy import PolicySpec

__all__ = ["RECENT_DEPLOYMENTS", "last_rollout", "recent_deployments", "target_workloads"]

RECENT_DEPLOYMENTS = "recent-deployments"


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def target_workloads(cluster: ClusterReader, target: RailTarget) -> list[tuple[str, Obj]]:
    """(kind, object) of every Deployment/StatefulSet the target names or whose pods its selector matches."""
    if not target.namespace:
        return []
    out: list[tuple[str, Obj]] = []
    deployments = cluster.deployments(target.namespace)
    if target.workloads:
        wanted = set(target.workloads)
        return [("Deployment", d) for d in deployments if meta(d).get("name") in wanted]
    selector = target.selector or ({"app": target.app} if target.app else {})
    if not selector:
        return []
    for kind, items in (("Deployment", deployments), ("StatefulSet", cluster.statefulsets(target.namespace))):
        for obj in items:
            labels = template_labels(obj)
            if all(labels.get(k) == v for k, v in selector.items()):
                out.append((kind, obj))
    return out


def _in_progress(kind: str, obj: Obj) -> str | None:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    generation = int(meta(obj).get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if generation > observed:
        return f"generation {generation} not yet observed (observedGeneration {observed})"
    replicas = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    if updated < replicas:
        return f"{updated} of {replicas} replicas updated"
    if kind == "StatefulSet" and status.get("currentRevision") != status.get("updateRevision"):
        return f"revision {status.get('currentRevision')} -> {status.get('updateRevision')}"
    return None


def last_rollout(kind: str, obj: Obj, replicasets: list[Obj]) -> tuple[datetime | None, str]:
    """When the workload last rolled out, and what showed it."""
    best: tuple[datetime | None, str] = (None, "")
    uid = meta(obj).get("uid")
    if kind == "Deployment":
        for rs in replicasets:
            if any(ref.get("uid") == uid and ref.get("controller") for ref in meta(rs).get("ownerReferences") or []):
                created = _time(meta(rs).get("creationTimestamp"))
                if created is not None and (best[0] is None or created > best[0]):
                    best = (created, f"ReplicaSet {meta(rs).get('name')} created")
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing":
            updated = _time(cond.get("lastUpdateTime")) or _time(cond.get("lastTransitionTime"))
            if updated is not None and (best[0] is None or updated > best[0]):
                best = (updated, f"Progressing {cond.get('reason', '')}".strip())
    return best


def recent_deployments(
    cluster: ClusterReader, policy: PolicySpec, kind: str, target: RailTarget, at: datetime
) -> Verdict:
    rule = policy.recent_deployments
    quiet = rule.quiet_period
    if kind not in rule.kinds:
        return Verdict(rail=RECENT_DEPLOYMENTS, status=RailStatus.SKIPPED,
                       reason=f"the quiet period applies to {', '.join(rule.kinds) or 'nothing'}, not {kind}")
    if quiet <= timedelta(0):
        return Verdict(rail=RECENT_DEPLOYMENTS, status=RailStatus.SKIPPED, reason="quiet period is 0 (off)")
    workloads = target_workloads(cluster, target)
    if not workloads:
        return Verdict(rail=RECENT_DEPLOYMENTS, status=RailStatus.OK,
                       reason=f"no Deployment or StatefulSet matches {target.describe()}")
    replicasets = cluster.replicasets(target.namespace) if target.namespace else []
    seen = []
    for wkind, obj in workloads:
        name = f"{wkind} {target.namespace}/{meta(obj).get('name')}"
        progress = _in_progress(wkind, obj)
        if progress is not None:
            return Verdict(rail=RECENT_DEPLOYMENTS, status=RailStatus.REFUSED,
                           reason=f"{name} is rolling out now ({progress})")
        when, evidence = last_rollout(wkind, obj, replicasets)
        if when is None:
            seen.append(f"{name}: no rollout time recorded")
            continue
        age = at - when
        if age < quiet:
            return Verdict(
                rail=RECENT_DEPLOYMENTS, status=RailStatus.REFUSED,
                reason=f"{name} rolled out {format_duration(max(age, timedelta(0)))} ago ({evidence} at "
                       f"{when.isoformat()}), within the quiet period of {format_duration(quiet)}",
            )
        seen.append(f"{name} last rolled out {format_duration(age)} ago")
    return Verdict(rail=RECENT_DEPLOYMENTS, status=RailStatus.OK,
                   reason=f"quiet period {format_duration(quiet)}: " + "; ".join(seen))
