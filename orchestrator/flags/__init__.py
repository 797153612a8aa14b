"""Flag providers behind one Protocol, chosen by the spec's ``provider.type``.

Adding a provider (LaunchDarkly, ConfigCat...) is one module with a ``build`` function
and one line in ``_REGISTRY``. Modules are imported on first use so the CLI stays fast
and a provider's client library is only needed when that provider is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from orchestrator.errors import SpecError
from orchestrator.flags.base import Allocation, Change, FlagProvider, FlagTarget, ProviderClients

_REGISTRY: dict[str, str] = {
    "flagd": "orchestrator.flags.flagd",
    "unleash": "orchestrator.flags.unleash",
}

Builder = Callable[[Any, FlagTarget, ProviderClients], FlagProvider]


def provider_types() -> list[str]:
    return sorted(_REGISTRY)


def build_provider(spec: Any, target: FlagTarget, clients: ProviderClients) -> FlagProvider:
    """A provider for ``spec`` (one of the provider models of ``orchestrator.specs.flags``)."""
    module = _REGISTRY.get(spec.type)
    if module is None:
        raise SpecError([f"<spec>:0: provider.type: unknown flag provider {spec.type!r}"])
    build = cast(Builder, importlib.import_module(module).build)
    return build(spec, target, clients)


__all__ = [
    "Allocation",
    "Change",
    "FlagProvider",
    "FlagTarget",
    "ProviderClients",
    "build_provider",
    "provider_types",
]
