"""Where ``{{name}}`` placeholders sit in a PromQL query, and which positions are allowed.

A check's query is user text with placeholders; the values come later (namespace, image tag, ...), so
the shape of the query must be fixed *before* any value is known. Two kinds of placeholder:

* **value placeholders** (``{{app}}``, ``{{version}}``, ...) stand for a string and may only appear inside
  the quoted value of a label matcher: ``app="{{app}}"``, ``version=~"{{version}}"``. Anywhere else
  (``> {{version}}``, a function argument, a comment) a value could change the expression, so the query is
  refused. Inside a regex matcher (``=~``, ``!~``) the value is escaped when rendered, because an image tag
  like ``1.2.3`` or ``.+`` is text, not a pattern;
* **selector placeholders** (``{{track_selector}}``) stand for a whole label matcher that the code builds
  from a closed set (``track="canary"``, ``track="baseline"``, ``track!~"canary|baseline"``), never from a
  user value. They must sit where a matcher sits: unquoted, inside ``{...}``, between ``{``/``,`` and
  ``,``/``}``.

The scan is a small PromQL lexer (strings with their escapes, raw backtick strings, comments, braces);
it does not parse the rest of the expression, which Prometheus itself rejects with a clear message.
Everything here is pure, so spec validation and rendering share one definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MAX_VALUE_LENGTH",
    "SAFE_VALUE",
    "SELECTOR_VARIABLES",
    "TEMPLATE_VAR",
    "Placeholder",
    "image_version",
    "placeholders",
    "unsafe_value",
    "value_problem",
]

TEMPLATE_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
SELECTOR_VARIABLES = frozenset({"track_selector"})

# Values land inside quoted label values; this charset can never leave the string (no quote, backslash or
# brace) and 253 characters bound every Kubernetes name and image reference without a digest-sized tail.
MAX_VALUE_LENGTH = 253
SAFE_VALUE = re.compile(rf"[A-Za-z0-9._:/@+\-]{{1,{MAX_VALUE_LENGTH}}}")

_OPERATORS = ("=~", "!~", "!=", "=")
_QUOTES = "\"'`"

Slot = Literal["value", "regex", "matcher"]


@dataclass(frozen=True)
class Placeholder:
    """One ``{{name}}`` in a query: where it is and what it stands for."""

    name: str
    start: int
    end: int
    slot: Slot  # value: in a quoted label value; regex: in a =~ / !~ value; matcher: a whole selector matcher
    quote: str  # the enclosing quote character ('' for a matcher)


def unsafe_value(value: object) -> str | None:
    """Why ``value`` may not be substituted into a query, or None when it is safe."""
    if isinstance(value, str) and SAFE_VALUE.fullmatch(value) is not None:
        return None
    text = str(value)
    shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
    return f"unsafe value {shown}: allowed are 1-{MAX_VALUE_LENGTH} letters, digits and . _ : / @ + -"


def _operator_before(query: str, quote_at: int) -> str | None:
    head = query[:quote_at].rstrip()
    for op in _OPERATORS:
        if head.endswith(op):
            return op
    return None


def _prev_char(query: str, at: int) -> str:
    head = query[:at].rstrip()
    return head[-1] if head else ""


def _next_char(query: str, at: int) -> str:
    tail = query[at:].lstrip()
    return tail[0] if tail else ""


def placeholders(query: str) -> list[Placeholder]:
    """Every placeholder of ``query`` with its slot; ``ValueError`` when one sits where it may not."""
    found: list[Placeholder] = []
    depth = 0
    i = 0
    quote = ""  # the open string's quote character, '' outside strings
    string_slot: Slot | None = None  # what a placeholder inside the open string would be
    while i < len(query):
        match = TEMPLATE_VAR.match(query, i) if query.startswith("{{", i) else None
        if match is not None:
            name = match.group(1)
            if name in SELECTOR_VARIABLES:
                if quote:
                    raise ValueError(
                        f"{{{{{name}}}}} is a whole label matcher: write it unquoted inside {{...}}, "
                        f'e.g. x{{app="{{{{app}}}}",{{{{{name}}}}}}}'
                    )
                if depth <= 0 or _prev_char(query, i) not in "{," or _next_char(query, match.end()) not in ",}":
                    raise ValueError(
                        f"{{{{{name}}}}} is a whole label matcher: it belongs inside {{...}} between matchers"
                    )
                found.append(Placeholder(name, i, match.end(), "matcher", ""))
            else:
                if not quote or string_slot is None:
                    raise ValueError(
                        f"{{{{{name}}}}} may only appear inside a quoted label value "
                        f'(e.g. {name}="{{{{{name}}}}}"); elsewhere a value could change the query'
                    )
                found.append(Placeholder(name, i, match.end(), string_slot, quote))
            i = match.end()
            continue
        ch = query[i]
        if quote:
            if ch == "\\" and quote != "`":
                i += 2  # an escaped character never ends the string
                continue
            if ch == quote:
                quote, string_slot = "", None
        elif ch in _QUOTES:
            quote = ch
            op = _operator_before(query, i) if depth > 0 else None
            string_slot = None if op is None else ("regex" if op in ("=~", "!~") else "value")
        elif ch == "#":
            newline = query.find("\n", i)
            i = len(query) if newline < 0 else newline
            continue
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        i += 1
    return found


def image_version(image: str) -> str:
    """The ``{{version}}`` of an image reference: its tag (``registry:5000/app:1.2`` -> ``1.2``), else ``latest``."""
    name = image.split("@", 1)[0].rsplit("/", 1)[-1]
    _, sep, tag = name.partition(":")
    return tag if sep and tag else "latest"


def value_problem(query: str, values: dict[str, str]) -> str | None:
    """The first reason why ``values`` (those known before the run) cannot be rendered into ``query``."""
    for p in placeholders(query):
        if p.slot != "matcher" and p.name in values:
            problem = unsafe_value(values[p.name])
            if problem is not None:
                return f"template variable {{{{{p.name}}}}} would get an {problem}"
    return None
