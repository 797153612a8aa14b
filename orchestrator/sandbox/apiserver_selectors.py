"""Label and field selectors, in both of their Kubernetes forms.

* The query-string form (``labelSelector=app=web,tier in (a,b),!legacy``) parsed by ``parse_label_selector``
  into requirements, and ``fieldSelector=metadata.name=x,status.phase!=Running`` by ``parse_field_selector``.
* The object form (``{"matchLabels": ..., "matchExpressions": [...]}``) used by Deployments and
  PodDisruptionBudgets, checked by ``selector_matches``.

A requirement is ``(key, operator, values)`` with operator one of ``=``, ``!=``, ``in``, ``notin``, ``exists``,
``!exists``.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.sandbox.apiserver_resources import ApiError

Requirement = tuple[str, str, tuple[str, ...]]

_SET_EXPR = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s*\((.*)\)\s*$")
_EQ_EXPR = re.compile(r"^\s*([^\s!=()]+)\s*(==|=|!=)\s*([^\s,()]*)\s*$")
_KEY = re.compile(r"^\s*(!?)\s*([^\s!=()]+)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses (``a in (x,y),b`` is two terms)."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return [t for t in terms if t.strip()]


def parse_label_selector(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for term in _split_top_level(text):
        if m := _SET_EXPR.match(term):
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            requirements.append((m.group(1), m.group(2), values))
        elif m := _EQ_EXPR.match(term):
            op = "!=" if m.group(2) == "!=" else "="
            requirements.append((m.group(1), op, (m.group(3),)))
        elif m := _KEY.match(term):
            requirements.append((m.group(2), "!exists" if m.group(1) else "exists", ()))
        else:
            raise ApiError(400, f"unable to parse requirement: {term!r} in label selector {text!r}")
    return requirements


def requirement_matches(labels: dict[str, str], req: Requirement) -> bool:
    key, op, values = req
    if op == "=":
        return labels.get(key) == values[0]
    if op == "!=":
        return labels.get(key) != values[0]
    if op == "in":
        return key in labels and labels[key] in values
    if op == "notin":
        return labels.get(key) not in values
    if op == "exists":
        return key in labels
    return key not in labels


def labels_match(labels: dict[str, str] | None, requirements: list[Requirement]) -> bool:
    present = labels or {}
    return all(requirement_matches(present, r) for r in requirements)


def parse_field_selector(text: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for term in _split_top_level(text):
        m = _EQ_EXPR.match(term)
        if not m:
            raise ApiError(400, f"invalid field selector term {term!r}")
        requirements.append((m.group(1), "!=" if m.group(2) == "!=" else "=", (m.group(3),)))
    return requirements


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string value of a dotted path, ``""`` when absent (as the real server compares it)."""
    current: Any = obj
    for part in path.split("."):
        if not isinstance(current, dict):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def fields_match(obj: dict[str, Any], requirements: list[Requirement]) -> bool:
    for key, op, values in requirements:
        equal = field_value(obj, key) == values[0]
        if equal != (op == "="):
            return False
    return True


def selector_requirements(selector: dict[str, Any] | None) -> list[Requirement]:
    """Requirements of a ``LabelSelector`` object (matchLabels + matchExpressions)."""
    if not selector:
        return []
    reqs: list[Requirement] = [(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}.get(expr.get("operator"))
        if op is None:
            raise ApiError(422, f"invalid label selector operator {expr.get('operator')!r}")
        reqs.append((expr["key"], op, tuple(str(v) for v in expr.get("values") or ())))
    return reqs


def selector_matches(selector: dict[str, Any] | None, labels: dict[str, str] | None) -> bool:
    """Whether a LabelSelector object selects these labels; an empty selector selects everything."""
    return labels_match(labels, selector_requirements(selector))


def selector_string(selector: dict[str, Any] | None) -> str:
    """The query-string form of a LabelSelector object (as ``Scale.status.selector`` carries it)."""
    terms = []
    for key, op, values in selector_requirements(selector):
        if op == "=":
            terms.append(f"{key}={values[0]}")
        elif op in ("in", "notin"):
            terms.append(f"{key} {op} ({','.join(values)})")
        elif op == "exists":
            terms.append(key)
        else:
            terms.append(f"!{key}")
    return ",".join(terms)
