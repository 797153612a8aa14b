"""The ``FlagRamp`` spec: ramp one variant of a feature flag through stages, each gated on metric checks.

Shape of a document::

    kind: FlagRamp
    spec:
      provider: {type: flagd, configMap: {...}} | {type: flagd, file: ...} | {type: unleash, ...}
      flag: new-checkout          # the flag key at the provider
      variant: "on"               # the variant being ramped (flagd); Unleash ramps the strategy itself
      control: "off"             # what everyone else gets (flagd; default: the flag's defaultVariant)
      stages: [{percent: 1, hold: 2m}, ..., {percent: 100}]
      checks: [...]               # the same Check vocabulary as canary gates
      minimumSample: {...}        # traffic a stage must see before it counts
      onFailure: revert | pause

The provider is a discriminated union keyed by ``type``; adding a provider is one model
here and one line in ``orchestrator.flags``'s registry. Treatment-vs-control checks use
the ``{{variant}}`` template variable: the query is evaluated once with the treatment
variant and once with the control variant. The check vocabulary is shared with canaries,
so the control side is written ``compareTo: stable`` (the experience everyone else has).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from orchestrator.specs.base import MAX_CHECKS, MAX_STEPS, K8sName, Metadata, Strict, first_duplicate
from orchestrator.specs.checks import Check, OnInconclusive
from orchestrator.specs.duration import Duration
from orchestrator.specs.promql import TEMPLATE_VAR

FlagKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=200)]
VariantName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=100)]


class ConfigMapRef(Strict):
    namespace: K8sName
    name: K8sName
    key: str = Field(default="flags.flagd.json", pattern=r"^[-._a-zA-Z0-9]+$")


class FlagdProviderSpec(Strict):
    """flagd / OpenFeature flag definitions, kept in a Kubernetes ConfigMap or in a local file."""

    type: Literal["flagd"]
    config_map: ConfigMapRef | None = Field(default=None, alias="configMap")
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> FlagdProviderSpec:
        if (self.config_map is None) == (self.file is None):
            raise ValueError("give exactly one of configMap or file")
        return self


class UnleashProviderSpec(Strict):
    """Unleash, through its Admin API: the ``rollout`` of a ``flexibleRollout`` strategy."""

    type: Literal["unleash"]
    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    project: str = "default"
    environment: str = "production"
    # Which flexibleRollout strategy to drive when the flag has several; the only one otherwise.
    strategy_id: str | None = Field(default=None, alias="strategyId")
    # The environment variable holding the Admin API token (never the token itself in a spec).
    token_env: str = Field(default="ORCHESTRATOR_UNLEASH_TOKEN", alias="tokenEnv")


ProviderSpec = Annotated[FlagdProviderSpec | UnleashProviderSpec, Field(discriminator="type")]


class Stage(Strict):
    percent: float = Field(gt=0, le=100)
    hold: Duration = timedelta(0)


class MinimumSample(Strict):
    """Traffic a stage must see before its gates count.

    ``query`` returns a cumulative count (a counter's sum, e.g. requests served with
    the variant); the sample of a stage is its increase since the stage began.
    """

    query: Annotated[str, Field(min_length=1)]
    min: int = Field(ge=1)
    # Each extension lengthens the stage by this much; after maxExtensions the ramp reverts.
    extend_by: Duration = Field(default=timedelta(minutes=1), alias="extendBy")
    max_extensions: int = Field(default=3, ge=0, alias="maxExtensions")


class OnFailure(StrEnum):
    REVERT = "revert"
    PAUSE = "pause"


class Target(Strict):
    """What the template variables ``{{namespace}}`` and ``{{app}}`` stand for in the checks."""

    namespace: K8sName | None = None
    app: K8sName | None = None


class FlagRampSpec(Strict):
    provider: ProviderSpec
    flag: FlagKey
    variant: VariantName = "on"
    control: VariantName | None = None
    target: Target = Field(default_factory=Target)
    stages: list[Stage] = Field(min_length=1, max_length=MAX_STEPS)
    checks: list[Check] = Field(default_factory=list, max_length=MAX_CHECKS)
    minimum_sample: MinimumSample | None = Field(default=None, alias="minimumSample")
    on_failure: OnFailure = Field(default=OnFailure.REVERT, alias="onFailure")
    on_inconclusive: OnInconclusive = Field(default_factory=OnInconclusive, alias="onInconclusive")

    @model_validator(mode="after")
    def _coherent(self) -> FlagRampSpec:
        percents = [s.percent for s in self.stages]
        if any(b <= a for a, b in itertools.pairwise(percents)):
            raise ValueError("stage percentages must rise strictly (a ramp only moves users in)")
        if isinstance(self.provider, UnleashProviderSpec) and any(p != int(p) for p in percents):
            raise ValueError("Unleash rollouts are whole percentages")
        if self.control is not None and self.control == self.variant:
            raise ValueError("control must differ from variant")
        names = [c.name for c in self.checks]
        dupe = first_duplicate(names)
        if dupe is not None:
            raise ValueError(f"check names must be unique; {dupe!r} appears more than once")
        for check in self.checks:
            if getattr(check.condition, "compare_to", None) is not None and (
                "variant" not in TEMPLATE_VAR.findall(check.query)
            ):
                raise ValueError(
                    f"check {check.name!r} compares treatment with control, "
                    "so its query must use {{variant}}"
                )
        return self


class FlagRamp(Strict):
    api_version: Literal["orchestrator.dev/v1"] = Field(default="orchestrator.dev/v1", alias="apiVersion")
    kind: Literal["FlagRamp"]
    metadata: Metadata
    spec: FlagRampSpec

    def workflow_id(self) -> str:
        return ramp_workflow_id(self.spec.provider.type, self.spec.flag)


def ramp_workflow_id(provider: str, flag: str) -> str:
    """One running ramp per flag and provider; the kill switch finds it by this id."""
    return f"flag-ramp-{provider}-{flag}"
