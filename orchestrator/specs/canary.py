"""The ``CanaryRollout`` spec."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from orchestrator.specs.base import MAX_CHECKS, MAX_STEPS, K8sName, Metadata, Strict, first_duplicate
from orchestrator.specs.checks import Check, OnInconclusive
from orchestrator.specs.duration import Duration
from orchestrator.specs.promql import image_version, value_problem


class Target(Strict):
    namespace: K8sName
    deployment: K8sName
    container: K8sName | None = None  # the first container when omitted


class Change(Strict):
    image: str | None = Field(default=None, pattern=r"^[^\s\"'\\{}]+$")
    env: dict[str, str] = Field(default_factory=dict)


class ReplicasRouting(Strict):
    """No mesh: traffic follows the ratio of ready canary to stable pods behind the same Service.

    ``replicas`` declares the stable Deployment's replica count as the author expects it. It is a hint
    for ``validate`` only (the cluster's count is read when the rollout starts): with it, weights that
    pods cannot represent (5 % of 4 pods is 1 pod, 25 %) are reported as warnings.
    """

    type: Literal["replicas"] = "replicas"
    replicas: int | None = Field(default=None, ge=1)


class GatewayApiRouting(Strict):
    """Gateway API: the weights of two backendRefs in one rule of an HTTPRoute."""

    type: Literal["gateway-api"]
    http_route: K8sName = Field(alias="httpRoute")
    stable_service: K8sName = Field(alias="stableService")
    canary_service: K8sName = Field(alias="canaryService")
    port: int | None = Field(default=None, ge=1, le=65535)


class IstioRouting(Strict):
    """Istio: the weights of two destinations in one HTTP route of a VirtualService."""

    type: Literal["istio"]
    virtual_service: K8sName = Field(alias="virtualService")
    route: str | None = None  # the named http route; the first one when omitted
    stable_host: str = Field(alias="stableHost")
    canary_host: str = Field(alias="canaryHost")
    stable_subset: str | None = Field(default=None, alias="stableSubset")
    canary_subset: str | None = Field(default=None, alias="canarySubset")


Routing = Annotated[
    ReplicasRouting | GatewayApiRouting | IstioRouting, Field(discriminator="type")
]


class CanaryReplicas(Strict):
    """``setWeight: {replicas: N}``: run exactly N canary pods (replicas routing only)."""

    replicas: int = Field(ge=0)


def _weight_kind(value: Any) -> str:
    return "replicas" if isinstance(value, dict | CanaryReplicas) else "percent"


Weight = Annotated[
    Annotated[Annotated[int, Field(ge=0, le=100, strict=True)], Tag("percent")]
    | Annotated[CanaryReplicas, Tag("replicas")],
    Discriminator(_weight_kind),
]


class SetWeightStep(Strict):
    # A percentage, or (replicas routing) a canary pod count: the weight is then N / total pods.
    set_weight: Weight = Field(alias="setWeight")


class Pause(Strict):
    duration: Duration | None = None
    until_approved: bool = Field(default=False, alias="untilApproved")
    timeout: Duration | None = None  # for untilApproved: what happens when nobody approves
    on_timeout: Literal["rollback", "promote"] = Field(default="rollback", alias="onTimeout")

    @model_validator(mode="after")
    def _shape(self) -> Pause:
        if self.until_approved:
            if self.duration is not None:
                raise ValueError("a pause is either for a duration or untilApproved, not both")
            if self.timeout is None:
                raise ValueError("untilApproved needs a timeout (what a forgotten approval turns into)")
        elif self.duration is None:
            raise ValueError("give duration or untilApproved: true")
        # A zero pause is a no-op step, most likely a typo; a zero approval timeout can never be approved.
        if self.duration is not None and self.duration.total_seconds() <= 0:
            raise ValueError("a pause lasts more than 0s (remove the step to not pause)")
        if self.timeout is not None and self.timeout.total_seconds() <= 0:
            raise ValueError("timeout must be greater than 0s")
        return self


class PauseStep(Strict):
    pause: Pause


class Analysis(Strict):
    """Run checks and wait for their verdicts before the next step."""

    checks: list[Check] = Field(min_length=1, max_length=MAX_CHECKS)
    duration: Duration | None = None  # for checks without a count: how long the step lasts


class AnalysisStep(Strict):
    analysis: Analysis


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        keys = set(value)
        for key in ("setWeight", "pause", "analysis"):
            if key in keys:
                return key
        return None
    kinds: dict[type, str] = {SetWeightStep: "setWeight", PauseStep: "pause", AnalysisStep: "analysis"}
    return kinds.get(type(value))


Step = Annotated[
    Annotated[SetWeightStep, Tag("setWeight")]
    | Annotated[PauseStep, Tag("pause")]
    | Annotated[AnalysisStep, Tag("analysis")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message="a step is one of setWeight, pause or analysis",
    ),
]


class OnFailure(StrEnum):
    ROLLBACK = "rollback"


class RollbackPolicy(Strict):
    # Keep the canary Deployment (scaled to 0) after a rollback, for post-mortems.
    keep_canary: bool = Field(default=False, alias="keepCanary")
    # Restore the stable template if a failure happens after promotion began.
    restore_stable: bool = Field(default=True, alias="restoreStable")


class CanarySpec(Strict):
    target: Target
    change: Change = Field(default_factory=Change)
    baseline: bool = False
    traffic: Routing = Field(default_factory=ReplicasRouting)
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    background_checks: list[Check] = Field(default_factory=list, alias="backgroundChecks", max_length=MAX_CHECKS)
    rollback: RollbackPolicy = Field(default_factory=RollbackPolicy)
    canary_replicas: int | None = Field(default=None, alias="canaryReplicas", ge=1)
    progress_deadline: Duration = Field(default=timedelta(minutes=10), alias="progressDeadline")
    on_inconclusive: OnInconclusive = Field(default_factory=OnInconclusive, alias="onInconclusive")
    # Refuse to start when a judged step cannot decide at the current traffic within its time (the CLI's
    # pre-flight, docs/judge.md): such a step ends "not enough traffic", which never promotes.
    strict_plan: bool = Field(default=False, alias="strictPlan")

    @model_validator(mode="after")
    def _coherent(self) -> CanarySpec:
        counted = [c.name for c in self.background_checks if c.count is not None]
        if counted:
            raise ValueError(f"background check {counted[0]!r} has a count: a background check watches until "
                             "the rollout ends, so remove count")
        names = [c.name for c in self.background_checks]
        for step in self.steps:
            if isinstance(step, AnalysisStep):
                names += [c.name for c in step.analysis.checks]
                for c in step.analysis.checks:
                    if c.count is None and step.analysis.duration is None:
                        raise ValueError(
                            f"check {c.name!r} has no count, so its analysis step needs a duration"
                        )
        dupe = first_duplicate(names)
        if dupe is not None:
            raise ValueError(f"check names must be unique; {dupe!r} appears more than once")
        relative = [
            c
            for c in self.all_checks()
            if getattr(c.condition, "compare_to", None) == "baseline"
            or (c.judge is not None and c.judge.compare_to == "baseline")
        ]
        if relative and not self.baseline:
            raise ValueError(f"check {relative[0].name!r} compares to baseline, so set baseline: true")
        self._replica_steps_need_replicas_routing()
        self._known_values_render()
        return self

    def _replica_steps_need_replicas_routing(self) -> None:
        if isinstance(self.traffic, ReplicasRouting):
            return
        for step in self.steps:
            if isinstance(step, SetWeightStep) and isinstance(step.set_weight, CanaryReplicas):
                raise ValueError(
                    f"setWeight: {{replicas: {step.set_weight.replicas}}} needs traffic type replicas; "
                    f"a {self.traffic.type} route takes a percentage"
                )

    def _known_values_render(self) -> None:
        # The full template check, with the values known before the run, so `validate` refuses what the
        # gate would refuse at its first measurement.
        values = {"namespace": self.target.namespace, "app": self.target.deployment, "target": self.target.deployment}
        if self.change.image is not None:
            values |= {"image": self.change.image, "version": image_version(self.change.image)}
        for check in self.all_checks():
            problem = value_problem(check.query, values)
            if problem is not None:
                raise ValueError(f"check {check.name!r}: {problem}")

    def warnings(self) -> list[str]:
        """Things that are valid but probably not what the author meant (``validate`` prints them)."""
        from orchestrator.specs.weights import weight_warnings

        return weight_warnings(self)

    def all_checks(self) -> list[Check]:
        out = list(self.background_checks)
        for step in self.steps:
            if isinstance(step, AnalysisStep):
                out += step.analysis.checks
        return out


class CanaryRollout(Strict):
    api_version: Literal["orchestrator.dev/v1"] = Field(default="orchestrator.dev/v1", alias="apiVersion")
    kind: Literal["CanaryRollout"]
    metadata: Metadata
    spec: CanarySpec
