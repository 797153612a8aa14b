"""Shared pieces of every spec: strict models and the document envelope.

``Strict`` is where rules that hold for every field of every kind live, so that no spec module
can forget them: unknown keys are errors, ``.nan``/``.inf`` are not numbers, a YAML boolean is not
a number (pydantic would read ``setWeight: true`` as 1), and integers stay within what every
Temporal SDK reads exactly (2**53). Field-specific bounds stay with their fields.
"""

from __future__ import annotations

import types
from collections.abc import Hashable, Iterable
from functools import cache
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

API_VERSION = "orchestrator.dev/v1"

MAX_INT = 2**53
# Far above any real spec, low enough that validating and running the largest one stays fast.
MAX_STEPS = 100
MAX_CHECKS = 50
MAX_NAMES = 1000  # lists of names (nodes, namespaces, labels) a policy or fault may name

# Namespaces no change of any kind may touch, whatever a spec, a policy or the operator's settings say.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

# RFC 1123 label, as Kubernetes requires for names and namespaces. A ``pattern=`` runs on pydantic's Rust
# engine, where ``$`` is the end of the text ("web\n" fails) and ``\Z`` does not compile; a Python ``re``
# check must use ``fullmatch`` instead, since its ``$`` also matches before a final newline.
K8sName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
]

H = TypeVar("H", bound=Hashable)


def first_duplicate(items: Iterable[H]) -> H | None:
    """The first item seen twice, in one pass (specs may list thousands of checks)."""
    seen: set[H] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def _numeric(annotation: Any) -> bool:
    """Whether a field accepts numbers (and not booleans), looking through Optional, unions and Annotated."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _numeric(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        args = get_args(annotation)
        return bool in args or any(_numeric(a) for a in args) if bool not in args else False
    return annotation is int or annotation is float


class Rejected:
    """Stands in for a value a numeric field must refuse; validation fails on it and the loader prints ``reason``.

    A field validator cannot do this job: pydantic forbids "before" validators on discriminator fields,
    and every field of every kind must get the same rule.
    """

    def __init__(self, value: Any, reason: str) -> None:
        self.value = value
        self.reason = reason

    def __repr__(self) -> str:
        return repr(self.value)


@cache
def _numeric_keys(model: type[BaseModel]) -> frozenset[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        if _numeric(field.annotation):
            keys |= {name, field.alias or name}
    return frozenset(keys)


class Strict(BaseModel):
    """Base for all spec models: unknown keys are errors, names are as written in YAML."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        out = None
        for key in _numeric_keys(cls):
            value = data.get(key)
            reason = None
            if isinstance(value, bool):
                reason = f"expected a number, got {str(value).lower()}"
            elif isinstance(value, int) and abs(value) > MAX_INT:
                reason = f"{value} is too large (at most {MAX_INT})"
            if reason is not None:
                out = dict(data) if out is None else out
                out[key] = Rejected(value, reason)
        return data if out is None else out


class Metadata(Strict):
    name: K8sName
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
