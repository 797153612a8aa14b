"""The ``FlagRamp`` spec: ramp one variant of a feature flag through stages, each gated on metric checks.

Shape of a document::

    kind: FlagRamp
    spec:
      provider: {type: flagd, name: shop-flags} | {type: unleash, name: main, project: default}
      flag: new-checkout          # the flag key at the provider
      variant: "on"               # the variant being ramped (flagd); Unleash ramps the strategy itself
      control: "off"             # what everyone else gets (flagd; default: the flag's defaultVariant)
      stages: [{percent: 1, hold: 2m}, ..., {percent: 100}]
      checks: [...]               # the same Check vocabulary as canary gates
      minimumSample: {...}        # traffic a stage must see before it counts
      onFailure: revert | pause

The provider is a discriminated union keyed by ``type``; adding a provider is one model
here and one line in ``orchestrator.flags``'s registry. A spec names a provider the operator
declared (``orchestrator.specs.operator``): where it lives and which credentials reach it are
never the spec's to choose. Treatment-vs-control checks use
the ``{{variant}}`` template variable: the query is evaluated once with the treatment
variant and once with the control variant. The check vocabulary is shared with canaries,
so the control side is written ``compareTo: stable`` (the experience everyone else has).
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from orchestrator.specs.base import MAX_CHECKS, MAX_STEPS, K8sName, Metadata, Strict, first_duplicate
from orchestrator.specs.checks import Check, OnInconclusive
from orchestrator.specs.duration import Duration
from orchestrator.specs.operator import ProviderName, UnleashName
from orchestrator.specs.promql import TEMPLATE_VAR

FlagKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=200)]
VariantName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=100)]


def _moved(field: str, kind: str, replacement: str) -> str:
    return (
        f"{field} is no longer written in a spec: the operator names where each {kind} provider lives "
        f"(flagProviders in the operator settings file, docs/security.md); write {replacement}"
    )


def _from_file(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("spec_file"))


class _ProviderRef(Strict):
    """What every provider reference has: a name the operator declared.

    Fields a spec once used to locate its provider (``url``, ``tokenEnv``, ``file``, ``configMap``) are
    refused in a spec file with their replacement. A run started before that still decodes from its
    history (its name is then empty), but nothing ever reads those fields: ``orchestrator.flags``
    refuses a reference without a name, so such a run fails visibly instead of reaching where its spec
    pointed.
    """

    name: ProviderName | None = Field(default=None, validate_default=True)

    @field_validator("name")
    @classmethod
    def _named(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and _from_file(info):
            raise ValueError("required field is missing: the name of one of the operator's flag providers")
        return value


class FlagdProviderSpec(_ProviderRef):
    """A flagd / OpenFeature provider the operator named; where its definitions live is the operator's."""

    type: Literal["flagd"]
    # Retired: a spec that chose a file or a ConfigMap could make the worker rewrite any it can reach.
    config_map: SkipJsonSchema[object] = Field(default=None, alias="configMap", exclude=True)
    file: SkipJsonSchema[object] = Field(default=None, exclude=True)

    @field_validator("config_map", "file", mode="before")
    @classmethod
    def _no_location(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and _from_file(info):
            field = "configMap" if info.field_name == "config_map" else "file"
            raise ValueError(_moved(field, "flagd", "provider: {type: flagd, name: <one of its flagd providers>}"))
        return value


class UnleashProviderSpec(_ProviderRef):
    """A flag at an Unleash server the operator named: the ``rollout`` of a ``flexibleRollout`` strategy."""

    type: Literal["unleash"]
    project: UnleashName = "default"
    environment: UnleashName = "production"
    # Which flexibleRollout strategy to drive when the flag has several; the only one otherwise.
    strategy_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=100)] | None = Field(
        default=None, alias="strategyId"
    )
    # Retired: a spec that chose the address and the token's variable could send any secret anywhere.
    url: SkipJsonSchema[object] = Field(default=None, exclude=True)
    token_env: SkipJsonSchema[object] = Field(default=None, alias="tokenEnv", exclude=True)

    @field_validator("url", "token_env", mode="before")
    @classmethod
    def _no_endpoint(cls, value: object, info: ValidationInfo) -> object:
        if value is not None and _from_file(info):
            field = "url" if info.field_name == "url" else "tokenEnv"
            replacement = "provider: {type: unleash, name: <one of its Unleash providers>}"
            raise ValueError(_moved(field, "Unleash", replacement))
        return value


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
