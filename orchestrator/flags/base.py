"""The one Protocol every flag provider implements, and the values it speaks in.

A provider knows one flag: it reads the current allocation, sets the share of users
that get the ramped variant, and turns the variant off. Each call is idempotent (setting
the percentage the flag already has writes nothing), which is what lets a Temporal
activity be retried after a crash without the provider seeing a change twice.
Providers are synchronous: they wrap blocking clients, and activities run them in a
thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from orchestrator.specs.operator import OperatorSettings


class Allocation(BaseModel):
    """What the provider serves right now."""

    percent: float  # share of users (or contexts) that get the ramped variant
    enabled: bool = True  # False when the provider has the flag switched off entirely
    detail: str = ""  # provider-specific, for humans (e.g. "fractional on=2500 off=7500")
    control: str | None = None  # the variant everyone else gets, when the provider has variants


class Change(BaseModel):
    """The outcome of one write: ``changed`` is False when the provider already had that value."""

    before: Allocation
    after: Allocation
    changed: bool


@dataclass(frozen=True)
class FlagTarget:
    """The flag a provider instance drives."""

    key: str
    variant: str = "on"
    control: str | None = None  # None: the flag's own default variant


@dataclass(frozen=True)
class ProviderClients:
    """Clients and environment handed to providers, so tests can pass their own."""

    kube_api_client: Callable[[], Any] | None = None  # returns a kubernetes.client.ApiClient
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_seconds: float = 10.0
    # The operator's named providers (``orchestrator.specs.operator.OperatorSettings``); None: read them
    # from ``ORCHESTRATOR_SETTINGS_FILE`` in ``env``.
    operator: OperatorSettings | None = None


class FlagProvider(Protocol):
    type: str

    def current(self) -> Allocation: ...

    def set_percent(self, percent: float) -> Change: ...

    def turn_off(self) -> Change: ...
