"""Evaluate a flagd flag definition the way flagd serves it: the OpenFeature SDK with flagd's file provider.

The kill switch uses this to confirm "off" from the consumer's side, not only from the bytes it wrote: the
definition (read back from the file or ConfigMap) is loaded by ``FlagdProvider(resolver_type=FILE)`` — the
pinned evaluator of ``openfeature-flagd-core`` — and evaluated for a fixed population of targeting keys.
Off means none of them is served the ramped variant. A fresh provider per evaluation loads the current
definition at once; it is bound to its own OpenFeature domain, so it never replaces an application's
provider in the same process.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from orchestrator.errors import FlagProviderError

__all__ = ["POPULATION", "served"]

POPULATION = [f"kill-check-{i:04d}" for i in range(1000)]
_WATCH_MS = 100  # the file provider's polling period (and its deadline)


def served(doc: dict[str, Any], flag: str, variant: str, keys: list[str] | None = None,
           timeout: float = 10.0) -> tuple[int, int]:
    """(keys served ``variant``, keys evaluated) for ``flag`` in the flagd definition ``doc``."""
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.provider import ProviderStatus

    population = keys or POPULATION
    definition = (doc.get("flags") or {}).get(flag)
    if not isinstance(definition, dict):
        raise FlagProviderError(f"flag {flag!r} is not in the flagd definition")
    values = list((definition.get("variants") or {}).values())
    with tempfile.TemporaryDirectory(prefix="flag-check-") as tmp:
        path = Path(tmp) / "flags.flagd.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(path),
                                 deadline_ms=_WATCH_MS)
        domain = f"kill-check-{uuid.uuid4().hex[:8]}"
        api.set_provider(provider, domain=domain)
        try:
            client = api.get_client(domain)
            deadline = time.monotonic() + timeout
            while client.get_provider_status() != ProviderStatus.READY:
                if time.monotonic() > deadline:
                    raise FlagProviderError(f"the flagd file provider did not load the definition within {timeout}s")
                time.sleep(0.02)
            hits = 0
            for key in population:
                ctx = EvaluationContext(targeting_key=key)
                if values and all(isinstance(v, bool) for v in values):
                    details: Any = client.get_boolean_details(flag, False, ctx)
                elif values and all(isinstance(v, str) for v in values):
                    details = client.get_string_details(flag, "", ctx)
                else:
                    details = client.get_object_details(flag, {}, ctx)
                hits += details.variant == variant
        finally:
            provider.shutdown()
            # The provider's file watcher looks once more after shutdown; let it, before the file goes away.
            time.sleep(2 * _WATCH_MS / 1000)
    return hits, len(population)
