"""flagd / OpenFeature flag definitions: the ramp edits the ``fractional`` split of one flag.

The flag JSON lives in a Kubernetes ConfigMap (the usual way flagd is fed in a cluster)
or in a local file. Only the variant/weight pairs of the flag's ``fractional`` rule are
rewritten; every other flag, every other key of this flag, the rest of its targeting
and the rule's bucketing expression stay as they were.

Why the split is written treatment first, with a fixed total weight
--------------------------------------------------------------------
``fractional`` hashes the bucketing key (by default ``[flagKey, targetingKey]``) to a
32-bit value ``h`` and walks the entries in list order: with integer weights and total
``T``, the bucket is ``(h * T) >> 32`` and the first entry whose running sum exceeds it
wins. With the ramped variant first and weight ``w``, a user gets it exactly when
``h < w * 2**32 / T``: a threshold on a value that never changes for that user. Raising
``w`` only moves the threshold up, so every user who had the variant keeps it and new
users come only from control. (The older evaluator generation, which used percentages of
``h / 2**32``, has the same property for the same ordering; mixing generations still
reshuffles users, because the hash input differs.)

A split written control first would move users around on every change, so the first
edit puts the ramped variant first. ``T`` is 10,000 (0.01 % resolution).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from orchestrator.errors import (
    ConflictError,
    FlagProviderError,
    KubeError,
    NotFoundError,
    SpecError,
    UnreachableError,
)
from orchestrator.flags.base import Allocation, Change, FlagTarget, ProviderClients
from orchestrator.specs.files import read_text

TOTAL_WEIGHT = 10_000
# flagd definition files are kilobytes; far above that, and still small enough to hold in memory.
MAX_FLAGS_BYTES = 4 * 1024 * 1024

Json = dict[str, Any]


# --- the pure part: reading and rewriting one flag's split ------------------------------------------


def _fractional_nodes(node: Any) -> Iterator[Json]:
    if isinstance(node, dict):
        if "fractional" in node and isinstance(node["fractional"], list):
            yield node
        for value in node.values():
            yield from _fractional_nodes(value)
    elif isinstance(node, list):
        for item in node:
            yield from _fractional_nodes(item)


def _split(args: list[Any]) -> tuple[list[Any], list[list[Any]]]:
    """The rule's bucketing expression (kept as is, may be empty) and its [variant, weight] entries."""
    if args and not isinstance(args[0], list):
        return [args[0]], [list(a) for a in args[1:]]
    return [], [list(a) for a in args]


def _weights(entries: list[list[Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for entry in entries:
        if not entry or not isinstance(entry[0], str):
            raise FlagProviderError(f"fractional entry {entry!r} is not [variant, weight]")
        weight = entry[1] if len(entry) > 1 else 1
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise FlagProviderError(f"fractional entry {entry!r} has a weight that is not a number")
        out[entry[0]] = out.get(entry[0], 0) + max(0, int(weight))
    return out


def _flag(doc: Json, key: str) -> Json:
    flags = doc.get("flags") if isinstance(doc, dict) else None
    if not isinstance(flags, dict):
        raise FlagProviderError("not a flagd flag definition: no top-level 'flags' object")
    flag = flags.get(key)
    if not isinstance(flag, dict):
        raise FlagProviderError(f"flag {key!r} is not defined (known: {', '.join(sorted(flags)) or 'none'})")
    return flag


def _variants(flag: Json, target: FlagTarget) -> tuple[str, str]:
    variants = flag.get("variants")
    if not isinstance(variants, dict):
        raise FlagProviderError(f"flag {target.key!r} has no variants")
    control = target.control or flag.get("defaultVariant")
    for name, role in ((target.variant, "variant"), (control, "control")):
        if name not in variants:
            raise FlagProviderError(
                f"flag {target.key!r} has no {role} variant {name!r} (variants: {', '.join(sorted(variants))})"
            )
    if control == target.variant:
        raise FlagProviderError(
            f"flag {target.key!r}: the control (default) variant is {control!r}, the ramped variant itself; "
            "name the control variant in the spec"
        )
    assert isinstance(control, str)
    return target.variant, control


def _the_rule(flag: Json, key: str) -> Json | None:
    nodes = list(_fractional_nodes(flag.get("targeting")))
    if len(nodes) > 1:
        raise FlagProviderError(f"flag {key!r} has {len(nodes)} fractional rules; a ramp drives exactly one")
    return nodes[0] if nodes else None


def read_allocation(doc: Json, target: FlagTarget) -> Allocation:
    flag = _flag(doc, target.key)
    variant, control = _variants(flag, target)
    enabled = flag.get("state", "ENABLED") != "DISABLED"
    rule = _the_rule(flag, target.key)
    if rule is None:
        if flag.get("targeting"):
            # A targeting rule without a split: we cannot tell the share without evaluating it.
            raise FlagProviderError(f"flag {target.key!r} has targeting but no fractional rule to ramp")
        full = flag.get("defaultVariant") == variant
        return Allocation(
            percent=100.0 if full else 0.0, enabled=enabled, detail="no fractional rule", control=control
        )
    _, entries = _split(rule["fractional"])
    weights = _weights(entries)
    total = sum(weights.values())
    percent = 100.0 * weights.get(variant, 0) / total if total else 0.0
    detail = "fractional " + " ".join(f"{name}={w}" for name, w in weights.items())
    return Allocation(percent=round(percent, 4), enabled=enabled, detail=detail, control=control)


def with_percent(doc: Json, target: FlagTarget, percent: float) -> Json:
    """A copy of ``doc`` whose flag gives ``variant`` to ``percent`` % and ``control`` to the rest."""
    if not 0 <= percent <= 100:
        raise FlagProviderError(f"percentage {percent} is outside 0-100")
    out = copy.deepcopy(doc)
    flag = _flag(out, target.key)
    variant, control = _variants(flag, target)
    weight = round(percent * TOTAL_WEIGHT / 100)
    rule = _the_rule(flag, target.key)
    if rule is None:
        if flag.get("targeting"):
            raise FlagProviderError(
                f"flag {target.key!r} has targeting but no fractional rule; add one where the ramp applies"
            )
        flag["targeting"] = {"fractional": [[variant, weight], [control, TOTAL_WEIGHT - weight]]}
        return out
    bucket_by, entries = _split(rule["fractional"])
    others = sorted(set(_weights(entries)) - {variant, control})
    if others:
        raise FlagProviderError(
            f"flag {target.key!r}: the fractional rule also splits into {', '.join(others)}; "
            f"a ramp drives a two-way split between {variant!r} and {control!r}"
        )
    rule["fractional"] = [*bucket_by, [variant, weight], [control, TOTAL_WEIGHT - weight]]
    return out


# --- where the JSON lives -------------------------------------------------------------------------


class _Store(Protocol):
    where: str

    def read(self) -> tuple[Json, str | None]: ...

    def write(self, doc: Json, version: str | None) -> None: ...


def _parse(text: str, where: str) -> Json:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlagProviderError(f"{where}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FlagProviderError(f"{where}: not a flagd flag definition")
    return doc


def _dump(doc: Json) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


class FileStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)

    def read(self) -> tuple[Json, str | None]:
        # The project's bounded reader: a regular file only, at most MAX_FLAGS_BYTES, UTF-8.
        try:
            text = read_text(self.path, limit=MAX_FLAGS_BYTES, field="flag definitions")
        except SpecError as exc:
            raise FlagProviderError(str(exc)) from None
        return _parse(text, self.where), None

    def write(self, doc: Json, version: str | None) -> None:
        # Write then rename, so flagd's file watcher never reads half a document.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(_dump(doc))
            with contextlib.suppress(OSError):
                os.chmod(tmp, self.path.stat().st_mode & 0o777)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class ConfigMapStore:
    def __init__(self, api_client: Any, namespace: str, name: str, key: str) -> None:
        from kubernetes import client

        self._api = client.CoreV1Api(api_client)
        self.namespace, self.name, self.key = namespace, name, key
        self.where = f"configmap {namespace}/{name} key {key}"

    def _wrap(self, exc: Exception) -> Exception:
        from kubernetes.client.exceptions import ApiException

        if isinstance(exc, ApiException):
            status = int(exc.status or 0)
            if status == 404:
                return NotFoundError(f"{self.where}: not found")
            if status == 409:
                return ConflictError(f"{self.where}: changed by someone else meanwhile")
            return KubeError(f"{self.where}: {status} {exc.reason}", status=status)
        host = getattr(getattr(self._api.api_client, "configuration", None), "host", "?")
        return UnreachableError("Kubernetes", str(host), str(exc))

    def read(self) -> tuple[Json, str | None]:
        try:
            cm = self._api.read_namespaced_config_map(self.name, self.namespace)
        except Exception as exc:
            raise self._wrap(exc) from None
        text = (cm.data or {}).get(self.key)
        if text is None:
            raise FlagProviderError(f"{self.where}: the ConfigMap has no such key")
        return _parse(text, self.where), cm.metadata.resource_version

    def write(self, doc: Json, version: str | None) -> None:
        # A merge patch carrying the resourceVersion read: a concurrent edit makes it fail with 409.
        body: Json = {"data": {self.key: _dump(doc)}}
        if version:
            body["metadata"] = {"resourceVersion": version}
        try:
            self._api.patch_namespaced_config_map(
                self.name, self.namespace, body, _content_type="application/merge-patch+json"
            )
        except Exception as exc:
            raise self._wrap(exc) from None


# --- the provider ---------------------------------------------------------------------------------


class FlagdProvider:
    type = "flagd"

    def __init__(self, store: _Store, target: FlagTarget) -> None:
        self.store = store
        self.target = target

    def current(self) -> Allocation:
        doc, _ = self.store.read()
        return read_allocation(doc, self.target)

    def _apply(self, percent: float) -> Change:
        for attempt in range(5):
            doc, version = self.store.read()
            before = read_allocation(doc, self.target)
            new = with_percent(doc, self.target, percent)
            if new == doc:
                return Change(before=before, after=before, changed=False)
            try:
                self.store.write(new, version)
            except ConflictError:
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
            return Change(before=before, after=read_allocation(new, self.target), changed=True)
        raise AssertionError("unreachable")

    def set_percent(self, percent: float) -> Change:
        return self._apply(percent)

    def turn_off(self) -> Change:
        # Off means nobody gets the ramped variant; the flag keeps serving its control variant
        # (disabling it instead would hand applications their coded defaults, which may differ).
        return self._apply(0.0)


def build(spec: Any, endpoint: Any, target: FlagTarget, clients: ProviderClients) -> FlagdProvider:
    """Where the definitions live is the operator's ``endpoint``; the spec only named it."""
    if endpoint.file is not None:
        return FlagdProvider(FileStore(endpoint.file), target)
    if clients.kube_api_client is None:
        raise FlagProviderError("a flagd ConfigMap needs Kubernetes access, and none is configured")
    ref = endpoint.config_map
    return FlagdProvider(ConfigMapStore(clients.kube_api_client(), ref.namespace, ref.name, ref.key), target)
