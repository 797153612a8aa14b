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
    owner: str | None = None  # the workload (Deployment or StatefulSet) the pod belongs to, when there is one
    owner_kind: str = "Deployment"  # the kind of ``owner``: "Deployment" or "StatefulSet"
    ready: bool = True  # the pod's Ready condition is True (and it is not being deleted)

    @property
    def workload(self) -> str | None:
        """``Kind namespace/name`` of the owning workload: the unit floors and percentages apply to."""
        return f"{self.owner_kind} {self.namespace}/{self.owner}" if self.owner else None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class TargetSet(BaseModel):
    """What the selector matched and which of the matches were chosen."""

    namespace: str
    selector: dict[str, str]
    candidates: list[PodInfo]
    chosen: list[PodInfo]
    deployments: list[str]  # Deployments whose pods the selector matches
    seed: int
    statefulsets: list[str] = Field(default_factory=list)  # StatefulSets whose pods the selector matches

    @property
    def ready(self) -> list[PodInfo]:
        """The candidates that are Ready: what is picked from and what percentages are taken over."""
        return [p for p in self.candidates if p.ready]


class WorkloadFloor(BaseModel):
    """The fewest ready pods one workload keeps while a fault is in: the strictest of its limits.

    ``sources`` says where each limit came from (the rollout strategy, a PodDisruptionBudget, the
    experiment's own ``blastRadius.maxUnavailable``), so a skipped round can say why.
    """

    kind: str  # Deployment | StatefulSet
    namespace: str
    name: str
    replicas: int  # desired (spec.replicas)
    ready: int  # pods Ready now
    floor: int
    sources: list[str] = Field(default_factory=list)
    hit: int = 0  # ready pods of this workload the fault takes down this round

    @property
    def key(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    def describe(self) -> str:
        return (f"{self.key}: {self.ready} of {self.replicas} ready, floor {self.floor} "
                f"({'; '.join(self.sources) or 'no limit'}), this round takes down {self.hit}")


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
    # Every pod the fault affects, in any namespace (killed, evicted, stressed, either side of a partition):
    # what the blast radius, the per-workload limits and the namespace rails are computed on.
    hits: list[PodInfo] = Field(default_factory=list)
    # Whether the hit pods stop serving (kill, eviction): only then do the ready-pod floors apply.
    disrupts: bool = False
    # Every object the fault writes, creates or deletes (nodes, workloads, pods, Chaos Mesh resources).
    touches: list[ObjectRef] = Field(default_factory=list)
    floors: list[WorkloadFloor] = Field(default_factory=list)
    # Set when this round injects nothing because a workload's ready-pod floor would be crossed: the
    # workflow records the round as skipped with this reason (entries are then empty).
    skipped: str | None = None

    def describe(self) -> str:
        return "\n".join(self.lines)

    def refusal(self) -> str | None:
        """Why a run with this as its first plan is refused (nothing to inject), else None.

        One sentence for the workflow and ``chaos run --dry-run``, so the dry run answers as the run would.
        """
        return f"nothing to inject: {self.skipped}" if self.skipped else None


class JanitorResult(BaseModel):
    """One janitor sweep, as the scheduled janitor workflow returns it (and ``chaos list`` shows it)."""

    reverted: list[str] = Field(default_factory=list)
    pending: int = 0  # marked faults not expired yet
    problems: list[str] = Field(default_factory=list)
    blind: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        parts = [f"reverted {len(self.reverted)}", f"{self.pending} still running"]
        if self.problems:
            parts.append(f"{len(self.problems)} could not be reverted")
        if self.blind:
            parts.append(f"cannot see {len(self.blind)} kind(s)")
        return ", ".join(parts)


__all__ = [
    "ALLOW_ANNOTATION",
    "EXPERIMENT_LABEL",
    "EXPIRES_ANNOTATION",
    "LEDGER_ANNOTATION",
    "BudgetReading",
    "JanitorResult",
    "LedgerEntry",
    "ObjectRef",
    "Plan",
    "PodInfo",
    "TargetSet",
    "WorkloadFloor",
]
