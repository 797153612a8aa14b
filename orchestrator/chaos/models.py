"""Data that chaos code passes around: object references, ledger entries, resolved targets, plans.

Plain pydantic models with no client imports, because workflow code imports them and they
travel through Temporal. The label and annotation names of the ledger live here too, so the
janitor, the faults and the safety rails agree on them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXPERIMENT_LABEL = "chaos.orchestrator.dev/experiment"
"""On every object a fault touched or created: the run id that owns the fault."""
EXPIRES_ANNOTATION = "chaos.orchestrator.dev/expires-at"
"""RFC 3339 time after which the janitor reverts the fault, workflow or not."""
LEDGER_ANNOTATION = "chaos.orchestrator.dev/ledger"
"""The ledger entry as JSON: what was done and the recorded state a revert restores."""
ALLOW_ANNOTATION = "chaos.orchestrator.dev/allow"
"""Opt-in: ``"true"`` on the workload (or its namespace) before any fault may touch it."""


class ObjectRef(BaseModel):
    """One Kubernetes object, enough to address it through the API."""

    model_config = ConfigDict(frozen=True)

    api_version: str  # "v1", "apps/v1", "networking.istio.io/v1beta1", "chaos-mesh.org/v1alpha1"
    kind: str
    namespace: str | None = None
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class LedgerEntry(BaseModel):
    """One fault on one object, recorded before it is applied.

    ``revert`` holds the state captured before injection (replicas, a route spec, the
    unschedulable flag); ``action`` what injection does (pods to delete, the CR to create).
    The same JSON is written to the object's ``ledger`` annotation, so the janitor can revert
    from the object alone.
    """

    run: str
    fault: str
    object: ObjectRef
    creates: bool = False  # the fault creates the object (a Chaos Mesh CR): revert deletes it
    action: dict[str, Any] = Field(default_factory=dict)
    revert: dict[str, Any] = Field(default_factory=dict)
    expires_at: datetime


class PodInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    node: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    owner: str | None = None  # the Deployment whose selector matches the pod, when there is one


class TargetSet(BaseModel):
    """What the selector matched and which of the matches were chosen."""

    namespace: str
    selector: dict[str, str]
    candidates: list[PodInfo]
    chosen: list[PodInfo]
    deployments: list[str]  # Deployments whose pods the selector matches
    seed: int


class BudgetReading(BaseModel):
    """One read of the experiment's error-budget query: the remaining fraction (0..1), or why there is none.

    Taken by the safety rail before injection and again when the run is recorded; the burn is the
    difference. ``remaining`` is None when the query had no (finite) data: nothing is guessed.
    """

    query: str
    remaining: float | None = None
    at: datetime
    message: str = ""


class Plan(BaseModel):
    """A fault, resolved and checked, ready to record and inject; also the output of ``--dry-run``."""

    run: str
    fault: str
    targets: TargetSet
    entries: list[LedgerEntry]
    affected_pods: int
    total_pods: int
    lines: list[str] = Field(default_factory=list)  # human-readable description of what will happen
    # The error budget as the safety rail read it (None when no budget is declared or the rails were skipped).
    budget: BudgetReading | None = None

    def describe(self) -> str:
        return "\n".join(self.lines)


__all__ = [
    "ALLOW_ANNOTATION",
    "EXPERIMENT_LABEL",
    "EXPIRES_ANNOTATION",
    "LEDGER_ANNOTATION",
    "BudgetReading",
    "LedgerEntry",
    "ObjectRef",
    "Plan",
    "PodInfo",
    "TargetSet",
]
