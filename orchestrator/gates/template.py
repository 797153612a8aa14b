"""Render ``{{name}}`` placeholders in a PromQL query, refusing anything that could change the query.

Rules (the positions are defined once, in ``orchestrator.specs.promql``, and also enforced when a spec is
validated):

* a **value placeholder** sits inside a quoted label value. Its value must be 1 to 253 letters, digits
  and ``._:/@+-``: a charset that can never leave the string. An empty value is refused too: ``app=""``
  matches every series *without* the label, which would silently widen the query;
* inside a **regex matcher** (``=~``, ``!~``) the value is escaped, so ``version=~"{{version}}"`` with
  ``1.2.3`` matches the tag ``1.2.3`` and not ``1x2y3``, and ``.+`` matches only the literal text ``.+``.
  A double- or single-quoted PromQL string interprets backslashes, so the escape is doubled there;
  a backtick string is raw;
* a **selector placeholder** (``{{track_selector}}``) becomes a whole label matcher built by
  ``track_selector`` from the closed set of tracks, never from a caller's variables. Stable pods carry no
  ``track`` label on a real cluster (nobody relabels the user's Deployment), so the stable side is
  selected by absence: ``track!~"canary|baseline"``.

Everything refused raises a non-retryable ``MetricError`` naming the variable; retrying cannot fix a spec.
"""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.errors import MetricError
from orchestrator.specs.promql import (
    MAX_VALUE_LENGTH,
    SELECTOR_VARIABLES,
    TEMPLATE_VAR,
    Placeholder,
    placeholders,
    unsafe_value,
)

__all__ = ["MAX_VALUE_LENGTH", "TRACK_LABEL", "regex_escape", "render", "track_selector", "validate_value"]

TRACK_LABEL = "track"
# The tracks the orchestrator labels its copies with (kube/labels.py puts them on pod templates).
_LABELLED_TRACKS = ("canary", "baseline")
# RE2 metacharacters; of the allowed value charset only '.' and '+' are among them.
_REGEX_META = frozenset("\\.+*?()|[]{}^$")


def track_selector(track: str) -> str:
    """The label matcher selecting ``track``'s series: labelled copies by value, the stable by absence."""
    if track in _LABELLED_TRACKS:
        return f'{TRACK_LABEL}="{track}"'
    if track == "stable":
        return f'{TRACK_LABEL}!~"{"|".join(_LABELLED_TRACKS)}"'
    raise MetricError(f"no track {track!r} (known: stable, canary, baseline)", retryable=False)


def validate_value(name: str, value: str) -> str:
    """Return ``value`` if it is safe to place inside a quoted PromQL label value, else raise."""
    problem = unsafe_value(value)
    if problem is not None:
        raise MetricError(f"template variable {{{{{name}}}}} has an {problem}", retryable=False)
    return value


def regex_escape(value: str, quote: str = '"') -> str:
    """``value`` as a literal inside an RE2 pattern written in a PromQL string quoted with ``quote``."""
    backslash = "\\" if quote == "`" else "\\\\"
    return "".join(backslash + ch if ch in _REGEX_META else ch for ch in value)


def render(query: str, variables: Mapping[str, str], selectors: Mapping[str, str] | None = None) -> str:
    """Substitute every placeholder in ``query``.

    ``variables`` give value placeholders; ``selectors`` give selector placeholders and must come from
    code (``track_selector``), never from a spec. Unknown names, misplaced placeholders and unsafe values
    raise ``MetricError``.
    """
    # A '{{' the pattern cannot read (e.g. '{{ app-name }}') would make Prometheus fail later, less clearly.
    if "{{" in TEMPLATE_VAR.sub("", query):
        raise MetricError("malformed template: every '{{' must be closed as {{name}}", retryable=False)
    try:
        found = placeholders(query)
    except ValueError as exc:
        raise MetricError(str(exc), retryable=False) from None
    given_selectors = selectors or {}
    missing = sorted(
        {
            p.name
            for p in found
            if p.name not in (given_selectors if p.name in SELECTOR_VARIABLES else variables)
        }
    )
    if missing:
        given = sorted({*variables, *given_selectors})
        raise MetricError(
            f"template variable {{{{{missing[0]}}}}} has no value (given: {', '.join(given) or 'none'})",
            retryable=False,
        )

    out: list[str] = []
    last = 0
    for p in found:
        out.append(query[last : p.start])
        out.append(_substitute(p, variables, given_selectors))
        last = p.end
    out.append(query[last:])
    return "".join(out)


def _substitute(p: Placeholder, variables: Mapping[str, str], selectors: Mapping[str, str]) -> str:
    if p.slot == "matcher":
        return selectors[p.name]
    value = validate_value(p.name, variables[p.name])
    return regex_escape(value, p.quote) if p.slot == "regex" else value
