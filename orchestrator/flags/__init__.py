"""Flag providers behind one Protocol, chosen by the spec's ``provider.type``.

Adding a provider (LaunchDarkly, ConfigCat...) is one module with a ``build`` function
and one line in ``_REGISTRY``. Modules are imported on first use so the CLI stays fast
and a provider's client library is only needed when that provider is used.

A spec only *names* a provider; ``build_provider`` looks the name up in the operator
settings (``orchestrator.specs.operator``) and hands the builder the operator's endpoint,
so where a provider lives and which token reaches it never come from a spec.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from orchestrator.errors import FlagProviderError, SpecError
from orchestrator.flags.base import Allocation, Change, FlagProvider, FlagTarget, ProviderClients

_REGISTRY: dict[str, str] = {
    "flagd": "orchestrator.flags.flagd",
    "unleash": "orchestrator.flags.unleash",
}

Builder = Callable[[Any, Any, FlagTarget, ProviderClients], FlagProvider]


def provider_types() -> list[str]:
    return sorted(_REGISTRY)


def resolve(spec: Any, clients: ProviderClients) -> Any:
    """The operator's endpoint that ``spec`` names, checked against what the spec asks of it.

    Raises a non-retryable ``FlagProviderError`` naming the known providers: a name the operator
    did not declare is a spec error that no retry can fix.
    """
    from orchestrator.specs.operator import ENV_VAR, operator_settings_from_env

    if not spec.name:
        # A run started before specs named their providers: its spec located the provider itself, which
        # is not trusted, so it is not followed.
        raise FlagProviderError(
            f"this ramp's spec locates its {spec.type} provider itself (a URL or a file), which is no longer "
            "trusted: abort it and start it again naming one of the operator's providers"
        )
    operator = clients.operator if clients.operator is not None else operator_settings_from_env(env=clients.env)
    endpoint = operator.flag_provider(spec.name)
    if endpoint is None or endpoint.type != spec.type:
        known = ", ".join(operator.flag_provider_names(spec.type)) or "none"
        where = operator.source if operator.source != "(none)" else f"no operator settings file (${ENV_VAR})"
        raise FlagProviderError(
            f"no {spec.type} flag provider named {spec.name!r} in the operator settings ({where}); "
            f"known {spec.type} providers: {known}"
        )
    for field, allowed in (("project", getattr(endpoint, "projects", None)),
                           ("environment", getattr(endpoint, "environments", None))):
        value = getattr(spec, field, None)
        if allowed is not None and value not in allowed:
            raise FlagProviderError(
                f"{spec.type} provider {spec.name!r} does not allow {field} {value!r} "
                f"(the operator allows: {', '.join(allowed) or 'none'})"
            )
    return endpoint


def build_provider(spec: Any, target: FlagTarget, clients: ProviderClients) -> FlagProvider:
    """A provider for ``spec`` (one of the provider models of ``orchestrator.specs.flags``)."""
    module = _REGISTRY.get(spec.type)
    if module is None:
        raise SpecError([f"<spec>:0: provider.type: unknown flag provider {spec.type!r}"])
    endpoint = resolve(spec, clients)
    build = cast(Builder, importlib.import_module(module).build)
    return build(spec, endpoint, target, clients)


__all__ = [
    "Allocation",
    "Change",
    "FlagProvider",
    "FlagTarget",
    "ProviderClients",
    "build_provider",
    "provider_types",
    "resolve",
]
