"""Render ``{{name}}`` placeholders in a PromQL query, refusing values that could change the query.

Substituted values end up inside double-quoted label matchers (``app="{{app}}"``), so
rather than escaping we allow only a charset that can never leave the string or form a
regex surprise in practice: letters, digits and ``._:/@+-``, 1 to 253 characters (the
longest DNS name, which bounds Kubernetes names and image references without a
digest-sized tail). An empty value is refused too: ``app=""`` matches every series
*without* the label, which would silently widen the query. Everything refused raises a
non-retryable ``MetricError`` naming the variable; retrying cannot fix a spec.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from orchestrator.errors import MetricError
from orchestrator.specs.checks import TEMPLATE_VAR

MAX_VALUE_LENGTH = 253
_SAFE_VALUE = re.compile(rf"[A-Za-z0-9._:/@+\-]{{1,{MAX_VALUE_LENGTH}}}")


def validate_value(name: str, value: str) -> str:
    """Return ``value`` if it is safe to place inside a quoted PromQL label value, else raise."""
    if not isinstance(value, str) or _SAFE_VALUE.fullmatch(value) is None:
        shown = repr(value) if len(str(value)) <= 40 else repr(str(value)[:40]) + "..."
        raise MetricError(
            f"template variable {{{{{name}}}}} has an unsafe value {shown}: allowed are 1-"
            f"{MAX_VALUE_LENGTH} letters, digits and . _ : / @ + -",
            retryable=False,
        )
    return value


def render(query: str, variables: Mapping[str, str]) -> str:
    """Substitute every ``{{ name }}`` in ``query``; unknown names and unsafe values raise ``MetricError``."""
    missing = sorted({name for name in TEMPLATE_VAR.findall(query) if name not in variables})
    if missing:
        raise MetricError(
            f"template variable {{{{{missing[0]}}}}} has no value (given: {', '.join(sorted(variables)) or 'none'})",
            retryable=False,
        )

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        return validate_value(name, variables[name])

    rendered = TEMPLATE_VAR.sub(substitute, query)
    # A '{{' left over is a placeholder the pattern could not read (e.g. '{{ app-name }}');
    # sending it would make Prometheus fail later with a less useful message.
    if "{{" in TEMPLATE_VAR.sub("", query):
        raise MetricError("malformed template: every '{{' must be closed as {{name}}", retryable=False)
    return rendered
