"""Inputs of the flag activities: pure data, so workflow code imports it without the providers' clients."""

from __future__ import annotations

from pydantic import BaseModel

from orchestrator.specs.checks import Check
from orchestrator.specs.flags import FlagdProviderSpec, UnleashProviderSpec


class FlagRef(BaseModel):
    provider: FlagdProviderSpec | UnleashProviderSpec
    flag: str
    variant: str
    control: str | None = None


class SetPercentRequest(BaseModel):
    ref: FlagRef
    percent: float


class FlagCheckRequest(BaseModel):
    check: Check
    variables: dict[str, str]
    treatment: str
    control: str


class SampleRequest(BaseModel):
    query: str
    variables: dict[str, str]


__all__ = ["FlagCheckRequest", "FlagRef", "SampleRequest", "SetPercentRequest"]
