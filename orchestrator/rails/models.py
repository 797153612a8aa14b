"""What the rails take and answer: the request, one verdict per rail, and the report.

Pure pydantic models with no client imports, because workflow code sends and receives them
(the ``rails.check`` activity). A verdict is one of three things: ``ok`` (checked and fine),
``refused`` (checked and not fine: the reason carries the numbers the rail saw) or
``skipped`` (the policy does not declare the rail, or it does not apply to this kind of
change: the reason says which). Anything that could not be checked at all is an error, not a
verdict, so an unreachable Prometheus never reads as "ok".
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.chaos import ChaosExperiment
from orchestrator.specs.flags import FlagRamp

__all__ = ["RailStatus", "RailTarget", "RailsReport", "RailsRequest", "Verdict", "target_of"]

RailKind = Literal["canary", "flag", "chaos"]
AnySpec = Annotated[CanaryRollout | FlagRamp | ChaosExperiment, Field(discriminator="kind")]


class RailStatus(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    SKIPPED = "skipped"  # not declared in the policy, or not applicable to this kind of change


class Verdict(BaseModel):
    rail: str
    status: RailStatus
    reason: str

    @property
    def refused(self) -> bool:
        return self.status is RailStatus.REFUSED

    def line(self) -> str:
        return f"{self.rail:<20} {self.status.value:<8} {self.reason}"


class RailTarget(BaseModel):
    """What the change touches: a namespace, its workloads (Deployments) and their pods' labels."""

    namespace: str | None = None
    workloads: list[str] = Field(default_factory=list)
    app: str | None = None
    selector: dict[str, str] = Field(default_factory=dict)  # chaos: the experiment's pod selector
    flag: str | None = None

    def describe(self) -> str:
        if self.flag is not None:
            where = f" ({self.namespace}/{self.app})" if self.namespace and self.app else ""
            return f"flag {self.flag}{where}"
        if self.workloads:
            return ", ".join(f"{self.namespace}/{w}" for w in self.workloads)
        sel = ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))
        return f"{self.namespace}/{{{sel}}}"


class RailsRequest(BaseModel):
    kind: RailKind
    spec: AnySpec
    target: RailTarget | None = None  # derived from the spec when omitted
    workflow_id: str | None = None  # the caller's own workflow: never a conflict with itself
    at: datetime | None = None  # the moment the time rails judge (workflow.now()); the activity's clock if None

    def resolved_target(self) -> RailTarget:
        return self.target if self.target is not None else target_of(self.spec)


class RailsReport(BaseModel):
    kind: RailKind
    target: str
    verdicts: list[Verdict]
    refused: bool
    reason: str = ""  # the first refusing rail: "<rail>: <reason>"

    @classmethod
    def of(cls, kind: RailKind, target: str, verdicts: list[Verdict]) -> RailsReport:
        first = next((v for v in verdicts if v.refused), None)
        return cls(kind=kind, target=target, verdicts=verdicts, refused=first is not None,
                   reason="" if first is None else f"{first.rail}: {first.reason}")

    def lines(self) -> list[str]:
        return [v.line() for v in self.verdicts]


def target_of(spec: CanaryRollout | FlagRamp | ChaosExperiment) -> RailTarget:
    if isinstance(spec, CanaryRollout):
        t = spec.spec.target
        return RailTarget(namespace=t.namespace, workloads=[t.deployment], app=t.deployment)
    if isinstance(spec, FlagRamp):
        ft = spec.spec.target
        return RailTarget(namespace=ft.namespace, app=ft.app, flag=spec.spec.flag)
    ct = spec.spec.target
    return RailTarget(namespace=ct.namespace, app=ct.app, selector=dict(ct.selector))
