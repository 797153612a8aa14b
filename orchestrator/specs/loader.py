"""Reading spec files: YAML in, a validated model out, or errors as ``file:line: field: message``.

Line numbers come from the YAML parser's node marks, recorded for every key path, so a
pydantic error location such as ``spec.steps.2.pause.timeout`` is reported at the line
where that key (or its nearest written ancestor) stands.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer

from orchestrator.errors import SpecError
from orchestrator.specs.base import Rejected
from orchestrator.specs.files import read_text, shown

PathKey = tuple[str | int, ...]

# The validation context of a document read from a file: fields retired for trust reasons are refused
# with their replacement there, while a run started before they were retired still decodes.
SPEC_FILE = {"spec_file": True}
# Limits far above any real spec (the shipped ones are a few KiB, under 500 values, 8 levels deep) and
# low enough that refusing a hostile file takes well under a second and a few MB of memory.
MAX_FILE_BYTES = 512 * 1024
MAX_DEPTH = 32
MAX_NODES = 10_000


def _kinds() -> dict[str, type[BaseModel]]:
    # One registry, keyed by the document's ``kind``; adding a kind is one line here.
    from orchestrator.specs.canary import CanaryRollout

    kinds: dict[str, type[BaseModel]] = {"CanaryRollout": CanaryRollout}
    for module, name in (
        ("orchestrator.specs.flags", "FlagRamp"),
        ("orchestrator.specs.chaos", "ChaosExperiment"),
        ("orchestrator.specs.chaos", "GameDay"),
        ("orchestrator.specs.policy", "RailsPolicy"),
        ("orchestrator.specs.operator", "OperatorSettings"),
        ("orchestrator.specs.release", "Release"),
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


class _Refused(Exception):
    """A limit or a rule of the composer, raised with the path and line it applies to."""

    def __init__(self, path: PathKey, line: int, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
        self.message = message


# libyaml's parser when present (it scans ten times faster); the composer above it is always PyYAML's,
# because that is where the limits are checked.
_SafeBase: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


class _LineLoader(Composer, _SafeBase):  # type: ignore[misc]
    """PyYAML's safe loader with the limits a front door needs, checked while the document is composed.

    Composing is where a hostile file costs nothing yet: aliases are shared nodes, not copies. So the
    expanded size and height of every node are measured there (memoised per node, so a "billion laughs"
    file is measured in a few hundred steps), the nesting depth is bounded before the composer's
    recursion can overflow, and duplicate or non-scalar mapping keys are refused at their own line.
    """

    def __init__(self, text: str) -> None:
        _SafeBase.__init__(self, text)
        Composer.__init__(self)
        self._path: list[str | int] = []
        self._composed = 0
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, height)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if isinstance(index, yaml.ScalarNode):
            self._path.append(str(index.value))
        elif isinstance(index, int):
            self._path.append(index)
        else:
            self._path.append("(key)" if parent is not None else "")
        path = tuple(p for p in self._path if p != "")
        try:
            event = self.peek_event()
            line = event.start_mark.line + 1
            self._composed += 1
            if self._composed > MAX_NODES:
                raise _Refused(path, line, f"the document has more than {MAX_NODES:,} values")
            if len(path) > MAX_DEPTH:
                raise _Refused(path[:MAX_DEPTH], line, f"nested more than {MAX_DEPTH} levels deep")
            is_alias = isinstance(event, yaml.AliasEvent)
            node: yaml.Node | None = super().compose_node(parent, index)
            assert node is not None  # the composer only returns None at the end of the stream
            measured = self._sizes.get(id(node))
            if measured is None:
                if is_alias:
                    raise _Refused(path, line, "an alias refers to a node that contains it (a recursive alias)")
                measured = self._measure(node)
                self._sizes[id(node)] = measured
            size, height = measured
            if size > MAX_NODES:
                raise _Refused(
                    path, line, f"the document expands to more than {MAX_NODES:,} values (aliases multiply them)"
                )
            if len(path) + height > MAX_DEPTH + 1:
                raise _Refused(path, line, f"nested more than {MAX_DEPTH} levels deep once aliases are expanded")
            return node
        finally:
            self._path.pop()

    def _measure(self, node: yaml.Node) -> tuple[int, int]:
        if isinstance(node, yaml.ScalarNode):
            return 1, 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key_path = (*self._location(), str(getattr(key_node, "value", "")))
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(
                        tuple(p for p in self._location()), key_node.start_mark.line + 1,
                        "a mapping key must be a plain value, not a list or a mapping",
                    )
                if key_node.tag != "tag:yaml.org,2002:merge":
                    if key_node.value in seen:
                        raise _Refused(key_path, key_node.start_mark.line + 1, "duplicate key")
                    seen.add(key_node.value)
                children += [key_node, value_node]
        else:
            children = list(node.value)
        size, height = 1, 1
        for child in children:
            child_size, child_height = self._sizes.get(id(child), (1, 1))
            size += child_size
            height = max(height, child_height + 1)
        return size, height

    def _location(self) -> tuple[str | int, ...]:
        return tuple(p for p in self._path if p != "")

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError, AttributeError, KeyError, IndexError) as exc:
            # e.g. ``!!int twenty``, ``!!timestamp nope`` (an AttributeError inside PyYAML) or a 13th month:
            # say where, not what Python said.
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.value!r} as {node.tag.rsplit(':', 1)[-1]}: {exc}", node.start_mark
            ) from None


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


def _refusal(exc: Exception, source: str) -> SpecError:
    if isinstance(exc, _Refused):
        field = ".".join(str(p) for p in exc.path) or "(document)"
        return SpecError([f"{source}:{exc.line}: {field}: {exc.message}"])
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        return SpecError([f"{source}:{line}: yaml: {_one_line(exc.problem or str(exc))}"])
    return SpecError([f"{source}:1: yaml: {_one_line(str(exc))}"])


def parse_yaml(text: str, source: str) -> tuple[Any, dict[PathKey, int]]:
    loader = _LineLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except (_Refused, yaml.YAMLError) as exc:
        raise _refusal(exc, source) from None
    finally:
        loader.dispose()
    if node is None:
        raise SpecError([f"{source}:1: kind: the file is empty"])
    lines: dict[PathKey, int] = {}
    _compose_lines(node, (), lines)
    return data, lines


def parse_yaml_all(text: str, source: str) -> list[tuple[Any, dict[PathKey, int]]]:
    """Every document of a multi-document stream (``---``), each with the line of every key path.

    Each document is composed under the same limits as a spec (size once aliases are expanded,
    depth, duplicate keys); the file as a whole is bounded by the reader's size limit.
    """
    loader = _LineLoader(text)
    docs: list[tuple[Any, dict[PathKey, int]]] = []
    try:
        while loader.check_node():
            # Node ids are only meaningful while their document is alive: measure each document afresh.
            loader._composed = 0
            loader._sizes.clear()
            node = loader.get_node()
            if node is not None:
                lines: dict[PathKey, int] = {}
                _compose_lines(node, (), lines)
                docs.append((loader.construct_document(node), lines))
    except (_Refused, yaml.YAMLError) as exc:
        raise _refusal(exc, source) from None
    finally:
        loader.dispose()
    return docs


def _one_line(text: str) -> str:
    return " ".join(text.split())


def quoted(value: object, limit: int = 60) -> str:
    """``value`` as an error line may quote it: its repr, cut to ``limit`` characters, on one line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def line_for(loc: PathKey, lines: dict[PathKey, int]) -> int:
    """The line of ``loc`` in a parsed document, else of its nearest written ancestor."""
    return _line_for(loc, lines)


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
        if isinstance(err.get("input"), Rejected):
            message = err["input"].reason
        elif err["type"] == "missing":
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
    if not isinstance(kind, str):
        raise SpecError([f"{source}:{lines.get(('kind',), 1)}: kind: must be a name such as CanaryRollout, "
                         f"not a {_yaml_type(kind)}"])
    if kind not in registry:
        raise SpecError(
            [f"{source}:{lines.get(('kind',), 1)}: kind: unknown kind {quoted(kind)} "
             f"(known: {', '.join(sorted(registry))})"]
        )
    if expect is not None and kind != expect:
        raise SpecError([f"{source}:{lines.get(('kind',), 1)}: kind: expected {expect}, got {kind}"])
    api = data.get("apiVersion")
    if api is not None and api != "orchestrator.dev/v1":
        raise SpecError(
            [f"{source}:{lines.get(('apiVersion',), 1)}: apiVersion: expected orchestrator.dev/v1, got {quoted(api)}"]
        )
    try:
        # ``SPEC_FILE``: rules that hold for what a person writes, not for data already in a run's history.
        return registry[kind].model_validate(data, context=SPEC_FILE)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, data, lines, source)) from None


M = TypeVar("M", bound=BaseModel)


def load_document(text: str, source: str, model: type[M], kind: str, what: str) -> M:
    """One of the operator's documents (a policy, the operator settings): ``kind`` only, its ``source`` kept.

    ``what`` begins the message for a document that is not a mapping (``"a policy is"``).
    """
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        raise SpecError([f"{source}:1: (document): {what} a mapping with apiVersion, kind, metadata, spec"])
    if data.get("kind") != kind:
        line = lines.get(("kind",), 1)
        raise SpecError([f"{source}:{line}: kind: expected {kind}, got {quoted(data.get('kind'))}"])
    try:
        document = model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_errors(exc, data, lines, source)) from None
    return document.model_copy(update={"source": source})


def _yaml_type(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    return "list" if isinstance(value, list) else type(value).__name__


def read_spec_text(path: str | Path) -> str:
    """The file's text through the bounded reader (``orchestrator.specs.files``): a regular file, UTF-8, at
    most ``MAX_FILE_BYTES``."""
    return read_text(path, limit=MAX_FILE_BYTES, hint="a spec is a few KiB of YAML")


def load_file(path: str | Path, expect: str | None = None) -> BaseModel:
    source = shown(path)
    return load_text(read_spec_text(path), source, expect)


def schema(kind: str) -> dict[str, Any]:
    registry = _kinds()
    if kind not in registry:
        raise SpecError([f"<command line>:0: kind: unknown kind {quoted(kind)} (known: {', '.join(sorted(registry))})"])
    return registry[kind].model_json_schema(by_alias=True)


Loader = Callable[[str | Path], BaseModel]


def line_of(path: str | Path, keys: PathKey) -> int:
    """The line where ``keys`` stands in the YAML file (its nearest written ancestor if absent)."""
    try:
        _, lines = parse_yaml(read_spec_text(path), str(path))
    except (OSError, SpecError):
        return 0
    return _line_for(keys, lines)
