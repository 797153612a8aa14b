"""Chaos experiments: faults behind one protocol, a ledger on the objects, safety rails and a janitor.

Layout (each module imports only those listed before it)::

    models      ledger entries, targets, plans; label/annotation names (pure data)
    objects     kind-generic Kubernetes access (official client, plain dicts)
    targets     selector + mode -> the pods to hit, deterministically
    ledger      mark before inject, restore-and-unmark in one write
    faults/     one module per fault type + the registry
    safety      the rails that refuse
    planning    spec -> checked plan (the workflow's first activity and --dry-run)
    janitor     revert every expired mark, with or without a workflow
    schedules   Temporal Schedules of experiments

The workflow (``workflows.chaos``) and its activities (``orchestrator.activities.chaos``) sit above.
Only ``models`` is imported here, so workflow code can import this package without I/O libraries.
"""

from orchestrator.chaos.models import (
    ALLOW_ANNOTATION,
    EXPERIMENT_LABEL,
    EXPIRES_ANNOTATION,
    LEDGER_ANNOTATION,
    LedgerEntry,
    ObjectRef,
    Plan,
)

__all__ = [
    "ALLOW_ANNOTATION",
    "EXPERIMENT_LABEL",
    "EXPIRES_ANNOTATION",
    "LEDGER_ANNOTATION",
    "LedgerEntry",
    "ObjectRef",
    "Plan",
]
