"""The janitor: revert every fault whose expiry has passed, whether or not its workflow still exists.

It lists, cluster-wide, each kind a fault marks or creates (``objects.MARKABLE``) with the label
``chaos.orchestrator.dev/experiment``, reads the ledger entry from the object's annotation and hands
it to the fault's own ``revert``: the janitor knows no fault's details. Kinds whose API is absent
(no Istio, no Chaos Mesh) are skipped. ``force=True`` (the big red button) reverts regardless of
expiry, optionally limited to some runs.

It looks only where the granted permissions reach. Namespaced kinds are listed in the allowed
namespaces only (``scope()``; cluster-wide with ``*``), and nodes only when node drain is enabled
(``ORCHESTRATOR_CHAOS_NODE_DRAIN``, which the chart sets from ``chaos.nodeDrain.enabled``; unset
means enabled, as on a development cluster with full rights). A list the API server forbids (403)
is not an error: it is what the janitor cannot see, reported in ``JanitorReport.blind`` as one
plain sentence per kind, which callers say once.

It runs on worker start (``run_janitor(settings)``), every minute as the Temporal Schedule
``orchestrator-chaos-janitor`` (``workflows/janitor.py``, ``orchestrator.client.janitor``),
and on demand (``orchestrator chaos janitor``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestrator.chaos import ledger
from orchestrator.chaos.faults import injector_for
from orchestrator.chaos.models import EXPERIMENT_LABEL
from orchestrator.chaos.objects import MARKABLE, NODE, Objects, ref
from orchestrator.config import Settings
from orchestrator.errors import KubeError, NotFoundError, OrchestratorError

__all__ = ["JanitorReport", "node_drain_enabled", "run_janitor", "scope", "sweep", "sweep_scoped"]

log = logging.getLogger("orchestrator.chaos.janitor")


@dataclass
class JanitorReport:
    reverted: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)  # marked, not expired yet
    problems: list[str] = field(default_factory=list)  # marked, but could not be reverted
    blind: list[str] = field(default_factory=list)  # where it may not look (403), one sentence per kind


def node_drain_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether this installation may drain nodes, and so whether nodes are worth (and allowed) listing."""
    value = (os.environ if env is None else env).get("ORCHESTRATOR_CHAOS_NODE_DRAIN", "").strip().lower()
    return value not in ("false", "0", "no", "off")


def sweep(
    objects: Objects,
    now: datetime | None = None,
    *,
    force: bool = False,
    runs: Collection[str] | None = None,
    dry_run: bool = False,
    namespaces: Collection[str] | None = None,
    nodes: bool = True,
) -> JanitorReport:
    """Revert expired (or, with ``force``, all) marked faults; ``runs`` limits it to those run ids.

    ``namespaces`` limits the namespaced kinds to those namespaces (a namespace-scoped install cannot
    list cluster-wide); None lists every namespace. ``nodes=False`` leaves nodes out (no node drain).
    """
    now = now or datetime.now(UTC)
    report = JanitorReport()
    for kind in MARKABLE:
        if kind is NODE and not nodes:
            continue
        items = []
        wheres = [None] if namespaces is None or not kind.namespaced else sorted(namespaces)
        for where in wheres:
            try:
                items += objects.list(kind, where, EXPERIMENT_LABEL)
            except NotFoundError:
                break  # the API (Istio, Chaos Mesh) is not installed: nothing of ours can be there
            except KubeError as exc:
                if exc.status in (403, 405):
                    place = f"in namespace {where}" if where else ("cluster-wide" if kind.namespaced else "")
                    report.blind.append(
                        f"cannot see {kind.plural} {place}".rstrip()
                        + f": listing them is forbidden (HTTP {exc.status}), so a fault left on them is not reverted "
                          "here")
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


def sweep_scoped(
    objects: Objects, now: datetime | None = None, *, force: bool = False, dry_run: bool = False
) -> JanitorReport:
    """``sweep`` where this installation may look: the allowed namespaces, and nodes with node drain."""
    return sweep(objects, now, force=force, dry_run=dry_run, namespaces=scope(), nodes=node_drain_enabled())


def run_janitor(settings: Settings, now: datetime | None = None) -> list[str]:
    """Entry point for the worker: sweep with the settings' cluster; one line per reverted fault.

    What could not be reverted, and what the janitor cannot see, are logged here as warnings, each
    in its own words (never as something "reverted").
    """
    from orchestrator.kube.client import load_api_client

    api = load_api_client(settings.kubeconfig, settings.kube_context, settings.kube_timeout)
    try:
        report = sweep_scoped(Objects(api), now)
    finally:
        api.close()
    for line in report.blind:
        log.warning("janitor: %s", line)
    for line in report.problems:
        log.warning("janitor could not revert %s", line)
    return report.reverted
