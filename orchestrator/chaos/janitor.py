"""The janitor: revert every fault whose expiry has passed, whether or not its workflow still exists.

It lists, cluster-wide, each kind a fault marks or creates (``objects.MARKABLE``) with the label
``chaos.orchestrator.dev/experiment``, reads the ledger entry from the object's annotation and hands
it to the fault's own ``revert``: the janitor knows no fault's details. Kinds whose API is absent
(no Istio, no Chaos Mesh) are skipped. ``force=True`` (the big red button) reverts regardless of
expiry, optionally limited to some runs.

The worker runs it on start (``run_janitor(settings)``), and ``orchestrator chaos janitor`` on demand.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.models import EXPERIMENT_LABEL
from orchestrator.chaos.objects import MARKABLE, Objects, ref
from orchestrator.config import Settings
from orchestrator.errors import KubeError, NotFoundError, OrchestratorError

__all__ = ["JanitorReport", "run_janitor", "scope", "sweep"]


@dataclass
class JanitorReport:
    reverted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # marked, not expired yet
    problems: list[str] = field(default_factory=list)


def sweep(
    objects: Objects,
    now: datetime | None = None,
    *,
    force: bool = False,
    runs: Collection[str] | None = None,
    dry_run: bool = False,
    namespaces: Collection[str] | None = None,
) -> JanitorReport:
    """Revert expired (or, with ``force``, all) marked faults; ``runs`` limits it to those run ids.

    ``namespaces`` limits the namespaced kinds to those namespaces (a namespace-scoped install cannot
    list cluster-wide); None lists every namespace.
    """
    now = now or datetime.now(UTC)
    report = JanitorReport()
    for kind in MARKABLE:
        try:
            if namespaces is None or not kind.namespaced:
                items = objects.list(kind, None, EXPERIMENT_LABEL)
            else:
                items = [i for ns in sorted(namespaces) for i in objects.list(kind, ns, EXPERIMENT_LABEL)]
        except NotFoundError:
            continue  # the API (Istio, Chaos Mesh) is not installed: nothing of ours can be there
        except KubeError as exc:
            if exc.status in (403, 405):
                report.problems.append(f"cannot list {kind.plural}: {exc}")
                continue
            raise
        for obj in items:
            meta = obj.get("metadata") or {}
            name = f"{kind.kind} {meta.get('namespace', '') + '/' if meta.get('namespace') else ''}{meta.get('name')}"
            run = ledger.owner_of(obj)
            if runs is not None and run not in runs:
                continue
            entry = ledger.read_entry(obj)
            if entry is None:
                report.problems.append(f"{name}: marked by {run} but its ledger annotation is unreadable")
                continue
            expires = ledger.expiry_of(obj) or entry.expires_at
            if not force and expires > now:
                report.pending.append(f"{name} (run {run}, expires {expires.isoformat()})")
                continue
            # The annotation names the object as it was written; trust the object we listed.
            entry = entry.model_copy(update={"object": ref(kind, str(meta.get("name")), meta.get("namespace"))})
            if dry_run:
                report.reverted.append(f"{name} (run {run}): would revert")
                continue
            try:
                what = injector_for(entry.fault, objects).revert(entry)
            except (OrchestratorError, KeyError) as exc:
                report.problems.append(f"{name} (run {run}): revert failed: {exc}")
                continue
            report.reverted.append(f"{name} (run {run}): {what}")
    return report


def scope() -> frozenset[str] | None:
    """Where to look: faults only ever land in allowed namespaces (and on nodes); None is everywhere."""
    from orchestrator.chaos.safety import ChaosPolicy

    policy = ChaosPolicy.from_env()
    return None if policy.allow_any_namespace else policy.allowed_namespaces


def run_janitor(settings: Settings, now: datetime | None = None) -> list[str]:
    """Entry point for the worker: sweep with the settings' cluster; one line per reverted fault."""
    from orchestrator.kube.client import load_api_client

    api = load_api_client(settings.kubeconfig, settings.kube_context)
    try:
        report = sweep(Objects(api), now, namespaces=scope())
    finally:
        api.close()
    return report.reverted + [f"problem: {p}" for p in report.problems]
