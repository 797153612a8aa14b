"""The three patch formats the Kubernetes API accepts, applied to plain JSON values.

* ``merge_patch`` — RFC 7386: objects merge recursively, ``null`` deletes, anything else replaces.
* ``strategic_merge_patch`` — a merge patch, except that lists whose items are all objects with a ``name`` key
  (containers, env, ports, volumes...) are merged item by item by name, and an item carrying
  ``"$patch": "delete"`` removes the item of that name. Other ``$``-directives are dropped.
* ``json_patch`` — RFC 6902 operations (add, remove, replace, move, copy, test) with RFC 6901 pointers.

``apply_patch`` chooses by content type. Every function returns a new value and leaves its inputs alone.
"""

from __future__ import annotations

import copy
from typing import Any

from orchestrator.sandbox.apiserver_resources import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _named_items(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value)


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _merge_named_lists(target: list[Any], patch: list[Any]) -> list[Any]:
    result = [copy.deepcopy(item) for item in target]
    index = {item["name"]: i for i, item in enumerate(result)}
    removed: set[str] = set()
    for item in patch:
        name = item["name"]
        if item.get("$patch") == "delete":
            removed.add(name)
        elif name in index:
            result[index[name]] = strategic_merge_patch(result[index[name]], item)
        else:
            index[name] = len(result)
            result.append(_strip_directives(item))
    return [item for item in result if item["name"] not in removed]


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    if isinstance(patch, list):
        # Lists merge by name only when both sides are lists of named objects (an empty list on either side
        # counts): that is the merge key of containers, env, ports and volumes.
        if patch and _named_items(patch) and (target is None or _named_items(target)):
            return _merge_named_lists(target or [], patch)
        return _strip_directives(patch)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, f"json patch: invalid pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list) and token.isdigit() and int(token) < len(current):
            current = current[int(token)]
        else:
            raise ApiError(422, f"json patch: path {path!r} does not exist")
    return current


def _get(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise ApiError(422, f"json patch: path {path!r} does not exist")


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise ApiError(422, "json patch: cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise ApiError(422, f"json patch: path {path!r} does not exist")


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise ApiError(422, f"json patch: index out of range in {path!r}")
    else:
        raise ApiError(422, f"json patch: cannot add under a scalar at {path!r}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise ApiError(400, "json patch: the body must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, f"json patch: malformed operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # replace requires the target to exist
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise ApiError(422, f"json patch: test failed at {path!r}")
        else:
            raise ApiError(400, f"json patch: unknown operation {kind!r}")
    return doc


def apply_patch(target: dict[str, Any], patch: Any, content_type: str) -> Any:
    """Apply a patch body of the given content type (server-side apply is approximated by a merge patch)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == JSON_PATCH:
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise ApiError(400, f"{kind}: the patch body must be a JSON object")
    if kind == STRATEGIC:
        return strategic_merge_patch(target, patch)
    if kind in (MERGE, APPLY):
        return merge_patch(target, patch)
    raise ApiError(415, f"unsupported patch content type {content_type!r}")
