"""Reading spec files: YAML in, a validated model out, or errors as ``file:line: field: message``.

Line numbers come from the YAML parser's node marks, recorded for every key path, so a
pydantic error location such as ``spec.steps.2.pause.timeout`` is reported at the line
where that key (or its nearest written ancestor) stands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from orchestrator.errors import SpecError

PathKey = tuple[str | int, ...]


def _kinds() -> dict[str, type[BaseModel]]:
    # One registry, keyed by the document's ``kind``; adding a kind is one line here.
    from orchestrator.specs.canary import CanaryRollout

    kinds: dict[str, type[BaseModel]] = {"CanaryRollout": CanaryRollout}
    for module, name in (
        ("orchestrator.specs.flags", "FlagRamp"),
        ("orchestrator.specs.chaos", "ChaosExperiment"),
        ("orchestrator.specs.chaos", "GameDay"),
    ):
        try:
            mod = __import__(module, fromlist=[name])
        except ImportError:
            continue
        if hasattr(mod, name):
            kinds[name] = getattr(mod, name)
    return kinds


def kinds() -> dict[str, type[BaseModel]]:
    return _kinds()


class _LineLoader(yaml.SafeLoader):
    pass


def _compose_lines(node: yaml.Node, path: PathKey, lines: dict[PathKey, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*path, key)] = key_node.start_mark.line + 1
            _compose_lines(value_node, (*path, key), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _compose_lines(item, (*path, index), lines)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[PathKey, int]]:
    try:
        loader = _LineLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark else 1
        raise SpecError([f"{source}:{line}: yaml: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"{source}:1: yaml: {exc}"]) from None
    if node is None:
        raise SpecError([f"{source}:1: kind: the file is empty"])
    lines: dict[PathKey, int] = {}
    _compose_lines(node, (), lines)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # e.g. a duplicate anchor the composer accepted
        raise SpecError([f"{source}:1: yaml: {exc}"]) from None
    return data, lines


def _line_for(loc: PathKey, lines: dict[PathKey, int]) -> int:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return 1


def _yaml_loc(loc: tuple[Any, ...], data: Any) -> PathKey:
    """Drop pydantic's union tags (``threshold``, ``setWeight``...) that are not keys of the document."""
    out: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            out.append(part)
            node = node[part]
        elif isinstance(node, dict | list):
            # Either a key that is absent (a missing field) or a union tag. A tag is followed by a part that
            # is a key of the same node; a missing field is not.
            following = loc[index + 1] if index + 1 < len(loc) else None
            tag = _is_tag(part) if isinstance(part, str) else False
            tag = tag or (isinstance(node, dict) and following is not None and following in node)
            # pydantic names the member of a ``type``-discriminated union after its tag
            tag = tag or (isinstance(node, dict) and node.get("type") == part)
            if isinstance(part, str) and not tag:
                out.append(part)
                node = None
        else:
            break
    return tuple(out)


def _is_tag(part: str) -> bool:
    return part in {"threshold", "relative", "setWeight", "pause", "analysis", "function-after"} or (
        "[" in part
    )


def format_errors(exc: ValidationError, data: Any, lines: dict[PathKey, int], source: str) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = _yaml_loc(tuple(err["loc"]), data)
        field = ".".join(str(p) for p in loc) or "(document)"
        message = err["msg"]
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        elif message.startswith("Assertion failed, "):
            message = message[len("Assertion failed, ") :]
        out.append(f"{source}:{_line_for(loc, lines)}: {field}: {message}")
    return out


def load_text(text: str, source: str, expect: str | None = None) -> BaseModel:
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError([f"{source}:1: (document): a spec is a mapping with apiVersion, kind, metadata, spec"])
    kind = data.get("kind")
    registry = _kinds()
    if kind is None:
        raise SpecError([f"{source}:1: kind: required field is missing"])
    if kind not in registry:
        raise SpecError(
            [f"{source}:{lines.get(('kind',), 1)}: kind: unknown kind {kind!r} (known: {', '.join(sorted(registry))})"]
        )
    if expect is not None and kind != expect:
        raise SpecError([f"{source}:{lines.get(('kind',), 1)}: kind: expected {expect}, got {kind}"])
    api = data.get("apiVersion")
    if api is not None and api != "orchestrator.dev/v1":
        raise SpecError(
            [f"{source}:{lines.get(('apiVersion',), 1)}: apiVersion: expected orchestrator.dev/v1, got {api!r}"]
        )
    try:
        return registry[kind].model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, data, lines, source)) from None


def load_file(path: str | Path, expect: str | None = None) -> BaseModel:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([f"{source}:0: (file): no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([f"{source}:0: (file): cannot read: {exc}"]) from None
    return load_text(text, source, expect)


def schema(kind: str) -> dict[str, Any]:
    registry = _kinds()
    if kind not in registry:
        raise SpecError([f"<command line>:0: kind: unknown kind {kind!r} (known: {', '.join(sorted(registry))})"])
    return registry[kind].model_json_schema(by_alias=True)


Loader = Callable[[str | Path], BaseModel]


def line_of(path: str | Path, keys: PathKey) -> int:
    """The line where ``keys`` stands in the YAML file (its nearest written ancestor if absent)."""
    try:
        _, lines = parse_yaml(Path(path).read_text(encoding="utf-8"), str(path))
    except (OSError, SpecError):
        return 0
    return _line_for(keys, lines)
