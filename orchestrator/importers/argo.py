"""Convert Argo Rollouts ``AnalysisTemplate`` / ``ClusterAnalysisTemplate`` metrics into checks.

Shape: ``convert_documents`` takes the parsed YAML documents of one or more files and returns, per
template, the converted checks (validated by the spec models) and a list of ``Skipped`` lines, one
per thing that could not be carried over, each with its reason. Nothing is guessed silently: a
heuristic that changes meaning (an argument mapped to a template variable by its name, a strict
``<`` read as ``<=``) is reported as a note.

What maps to what:

* ``provider.prometheus.query`` -> ``query``; ``{{args.NAME}}`` becomes a template variable
  (``--var NAME=app``, or by name: namespace -> ``{{namespace}}``; app/service/service-name ->
  ``{{app}}``) or the argument's literal value (``--set NAME=VALUE``, or the template's ``value``).
  A label matcher on an argument whose ``valueFrom.podTemplateHashValue`` is ``Latest`` / ``Stable``
  becomes ``{{track_selector}}`` with ``track`` canary / stable: this project tells the sides apart
  by the track label it puts on the pods it creates, not by pod-template hash.
* ``successCondition`` / ``failureCondition``: ``result[0] <= X`` / ``>= X`` (and ``<``, ``>``,
  with ``result`` alone read as ``result[0]``) -> a ``max`` / ``min`` bound; ``all(result, {# < X})``
  -> the same bound on every series (a threshold checks every series anyway); ``len(result) == 0``
  -> the query wrapped as ``count(...) or vector(0)`` with ``max: 0``; ``isNaN(result[0])`` joined
  with ``||`` -> ``noData: pass`` in a success condition, ``noData: fail`` in a failure condition.
  When both conditions are given the success condition is kept (Argo's band between the two is
  inconclusive, a threshold has no such band) and that is reported.
* ``interval``, ``count``, ``failureLimit``, ``inconclusiveLimit``, ``consecutiveErrorLimit``,
  ``initialDelay`` -> the same fields. A metric with a count is an analysis check; one without a
  count (Argo runs it until the rollout ends) a background check.
* ``dryRun``: this project has no dry-run checks; a matching metric is converted but reported, so
  it is not made to gate a rollout unnoticed.

Input rules (the file is untrusted, like a spec):

* Documents come from the project's hardened YAML loader (``parse_yaml_all``): aliases, depth and
  duplicate keys are bounded or refused there. Each document arrives as a ``Document`` with the line
  of every key path.
* A template whose shape is not Argo's (``spec`` or ``metadata`` not a mapping, ``metrics`` not a list,
  a ``query`` or a condition that is not a string, a ``count`` that is not a whole number, a ``dryRun``
  pattern that is not a regular expression) is malformed input: ``SpecError`` with
  ``file:line: field: message`` (exit 2). What is well formed but has no equivalent here is a
  ``Skipped`` line (exit 1).
* A literal value pasted into PromQL (``--set``, an argument's ``value``) must pass the same value check
  as a template variable (``orchestrator.specs.promql.unsafe_value``), so no value can close a string or
  a selector and add to the expression.
* ``dryRun`` patterns are Go regular expressions in Argo; here they are matched by a small automaton
  over the subset real templates use (literals, ``.``, ``*``, ``+``, ``?``, ``^``, ``$``), which takes
  time linear in the name whatever the pattern, instead of a backtracking engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from orchestrator.errors import SpecError
from orchestrator.specs.checks import Check
from orchestrator.specs.files import shown
from orchestrator.specs.loader import PathKey, line_for
from orchestrator.specs.promql import unsafe_value

KINDS = ("AnalysisTemplate", "ClusterAnalysisTemplate")
# Argument names that mean a template variable when the user gives no mapping.
VARIABLE_BY_NAME = {
    "namespace": "namespace",
    "app": "app",
    "app-name": "app",
    "application": "app",
    "service": "app",
    "service-name": "app",
    "deployment": "app",
}
_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
_NUM = r"(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_RESULT = r"(?:result\[0\]|result|default\(result\[0\],\s*0\))"
_COMPARE = re.compile(rf"^{_RESULT}\s*(<=|>=|<|>)\s*{_NUM}$")
_COMPARE_REVERSED = re.compile(rf"^{_NUM}\s*(<=|>=|<|>)\s*{_RESULT}$")
_ALL = re.compile(rf"^all\(result,\s*\{{\s*#\s*(<=|>=|<|>)\s*{_NUM}\s*\}}\)$")
_ANY = re.compile(rf"^any\(result,\s*\{{\s*#\s*(<=|>=|<|>)\s*{_NUM}\s*\}}\)$")
_EMPTY = re.compile(r"^len\(result\)\s*(==\s*0|<\s*1)$")
_NOT_EMPTY = re.compile(r"^len\(result\)\s*(>\s*0|>=\s*1|!=\s*0)$")
_NAN = re.compile(rf"^isNaN\(\s*{_RESULT}\s*\)$")
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}
# Far above any real template, low enough that no regular expression below runs long on what passes.
MAX_QUERY = 16 * 1024
MAX_CONDITION = 1024
MAX_COUNT = 1_000_000


@dataclass(frozen=True)
class Document:
    """One parsed YAML document of a file, with the line of every key path (for error messages)."""

    source: str
    data: Any
    lines: Mapping[PathKey, int] = field(default_factory=dict)


@dataclass
class Skipped:
    where: str  # e.g. "argo.yaml: AnalysisTemplate/success-rate: metric error-rate"
    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.reason}"


@dataclass
class Converted:
    source: str
    kind: str
    name: str
    analysis: list[Check] = field(default_factory=list)
    background: list[Check] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The converted checks as spec YAML: an analysis step's checks and the background checks."""
        out: dict[str, Any] = {}
        dump = {"mode": "json", "by_alias": True, "exclude_defaults": True}
        if self.analysis:
            out["analysis"] = {"checks": [c.model_dump(**dump) for c in self.analysis]}  # type: ignore[arg-type]
        if self.background:
            out["backgroundChecks"] = [c.model_dump(**dump) for c in self.background]  # type: ignore[arg-type]
        return out


class _Unconvertible(Exception):
    def __init__(self, what: str, reason: str) -> None:
        super().__init__(reason)
        self.what, self.reason = what, reason


class _Malformed(Exception):
    """Not an Argo template's shape: reported as ``file:line: field: message`` by ``convert_documents``."""

    def __init__(self, path: PathKey, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def _type(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else f"a {type(value).__name__}"


def _mapping(value: Any, path: PathKey) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(path, f"must be a mapping, not {_type(value)}")
    return value


def _list(value: Any, path: PathKey) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(path, f"must be a list, not {_type(value)}")
    return value


def _text(value: Any, path: PathKey, what: str = "a string") -> str | None:
    """A scalar written where Argo has a string (a bare number or name is read as its text)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Malformed(path, f"must be {what}, not {_type(value)}")
    return str(value)


@dataclass
class _Bounds:
    min: float | None = None
    max: float | None = None
    no_data: str | None = None
    empty_means_success: bool | None = None  # len(result) shapes
    notes: list[str] = field(default_factory=list)


def convert_documents(
    docs: Iterable[Document],
    variables: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
) -> list[Converted]:
    """Convert every Analysis template among ``docs``; ``SpecError`` for the first malformed one."""
    results: list[Converted] = []
    for doc in docs:
        if not isinstance(doc.data, dict) or doc.data.get("kind") not in KINDS:
            continue
        try:
            results.append(_template(doc.source, doc.data, dict(variables or {}), dict(values or {})))
        except _Malformed as exc:
            where = ".".join(str(p) for p in exc.path) or "(document)"
            line = line_for(exc.path, dict(doc.lines))
            raise SpecError([f"{shown(doc.source)}:{line}: {where}: {exc.message}"]) from None
    return results


def _template(source: str, doc: dict[str, Any], variables: dict[str, str], values: dict[str, str]) -> Converted:
    metadata = _mapping(doc.get("metadata"), ("metadata",))
    name = _text(metadata.get("name"), ("metadata", "name")) or "?"
    out = Converted(source=source, kind=str(doc["kind"]), name=name)
    where = f"{source}: {out.kind}/{name}"
    spec = _mapping(doc.get("spec"), ("spec",))
    args: dict[str, dict[str, Any]] = {}
    for i, a in enumerate(_list(spec.get("args"), ("spec", "args"))):
        arg = _mapping(a, ("spec", "args", i))
        _mapping(arg.get("valueFrom"), ("spec", "args", i, "valueFrom"))
        args[_text(arg.get("name"), ("spec", "args", i, "name")) or ""] = arg
    dry_run = [_pattern(d, ("spec", "dryRun", i)) for i, d in enumerate(_list(spec.get("dryRun"), ("spec", "dryRun")))]
    if spec.get("measurementRetention"):
        out.skipped.append(Skipped(where, "measurementRetention",
                                   "a check keeps its last measurements in the rollout status; not configurable"))
    for i, item in enumerate(_list(spec.get("metrics"), ("spec", "metrics"))):
        path: PathKey = ("spec", "metrics", i)
        metric = _mapping(item, path)
        mname = _text(metric.get("name"), (*path, "name")) or "?"
        try:
            check, notes = _metric(metric, path, args, variables, values)
        except _Unconvertible as exc:
            out.skipped.append(Skipped(f"{where}: metric {mname}", exc.what, exc.reason))
            continue
        out.notes += [f"{where}: metric {mname}: {n}" for n in dict.fromkeys(notes)]
        if any(p is not None and p.matches(mname) for p in dry_run):
            out.skipped.append(Skipped(f"{where}: metric {mname}", "dryRun",
                                       "this project has no dry-run checks: the converted check gates the rollout; "
                                       "leave it out of the spec to keep it observational"))
        unknown = [p for p in dry_run if p is None]
        if unknown:
            out.notes.append(f"{where}: metric {mname}: dryRun: a pattern beyond literals and . * + ? cannot be "
                             "matched here; check by hand whether it names this metric")
        (out.analysis if check.count is not None else out.background).append(check)
    return out


def _metric(metric: dict[str, Any], path: PathKey, args: dict[str, Any], variables: dict[str, str],
            values: dict[str, str]) -> tuple[Check, list[str]]:
    provider = _mapping(metric.get("provider"), (*path, "provider"))
    others = sorted(str(k) for k in provider if k != "prometheus")
    if "prometheus" not in provider:
        raise _Unconvertible("provider", f"only the prometheus provider converts (this metric uses {others or 'none'})")
    prom = _mapping(provider["prometheus"], (*path, "provider", "prometheus"))
    notes: list[str] = []
    for key in sorted(str(k) for k in set(prom) - {"query", "address"}):
        raise _Unconvertible(f"prometheus.{key}", "per-check Prometheus settings (auth, headers, timeout) do not "
                                                  "exist here: the worker's Prometheus settings apply")
    address = _text(prom.get("address"), (*path, "provider", "prometheus", "address"))
    if address:
        notes.append(f"prometheus.address {address!r} dropped: the worker's Prometheus URL is used")
    query = _text(prom.get("query"), (*path, "provider", "prometheus", "query"), "a string (a PromQL query)") or ""
    if len(query) > MAX_QUERY:
        raise _Unconvertible("query", f"longer than {MAX_QUERY // 1024} KiB")
    query, track, arg_notes = _query(query, args, variables, values)
    notes += arg_notes
    conditions = [_text(metric.get(k), (*path, k), "a string (an expression on result)")
                  for k in ("successCondition", "failureCondition")]
    for key, text in zip(("successCondition", "failureCondition"), conditions, strict=True):
        if text is not None and len(text) > MAX_CONDITION:
            raise _Unconvertible(key, f"longer than {MAX_CONDITION} characters")
    bounds = _conditions(*conditions)
    notes += bounds.notes
    if bounds.empty_means_success is not None:
        query = f"count({query.strip()}) or vector(0)"
        bounds = _Bounds(max=0, notes=bounds.notes) if bounds.empty_means_success else _Bounds(min=1)
    condition = {k: v for k, v in (("min", bounds.min), ("max", bounds.max)) if v is not None}
    check: dict[str, Any] = {"name": str(metric.get("name")), "query": query, "condition": condition}
    if bounds.no_data:
        check["noData"] = bounds.no_data
    if track:
        check["track"] = track
    for key in ("interval", "initialDelay"):
        if metric.get(key) is not None:
            check[key] = metric[key]
    for key in ("failureLimit", "inconclusiveLimit", "consecutiveErrorLimit"):
        limit = _limit(metric.get(key), (*path, key))
        if limit is not None:
            check[key] = limit
    if isinstance(check.get("failureLimit"), int) and check["failureLimit"] < 0:
        raise _Unconvertible("failureLimit", "a negative (unlimited) failureLimit never fails: not a gate")
    count = _count(metric.get("count"), (*path, "count"))
    if count is not None:
        check["count"] = count
    elif metric.get("interval") is None:
        check["count"] = 1  # Argo takes one measurement when neither count nor interval is set
    try:
        return Check.model_validate(check), notes
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "check"
        raise _Unconvertible(loc, f"the converted check is invalid: {first['msg']}") from None


def _count(count: Any, path: PathKey) -> int | None:
    """Argo's count, an int-or-string; an argument reference cannot be resolved here."""
    if count is None:
        return None
    if isinstance(count, str):
        if _ARG.search(count):
            raise _Unconvertible("count", f"count {count!r} is an argument reference; give the number")
        if re.fullmatch(r"[0-9]{1,7}", count.strip(), flags=re.ASCII) is None:
            raise _Malformed(path, f"{_short(count)} is not a whole number of measurements")
        count = int(count.strip())
    if isinstance(count, bool) or not isinstance(count, int):
        raise _Malformed(path, f"must be a whole number of measurements, not {_type(count)}")
    if not 0 <= count <= MAX_COUNT:
        raise _Malformed(path, f"must be between 0 and {MAX_COUNT:,}")
    return count


def _limit(value: Any, path: PathKey) -> int | None:
    """A failure, inconclusive or error limit: Argo's int-or-string, a whole number (-1 is Argo's "no limit")."""
    if value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,7}", value.strip(), flags=re.ASCII):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        shown_value = _short(value) if isinstance(value, str) else _type(value)
        raise _Malformed(path, f"must be a whole number, not {shown_value}")
    if not -1 <= value <= MAX_COUNT:
        raise _Malformed(path, f"must be between -1 and {MAX_COUNT:,}")
    return value


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


class _Pattern:
    """A dryRun ``metricName`` pattern matched by a small automaton: linear in the name, whatever the pattern.

    Tokens are a character (``None`` for ``.``) with an optional ``*`` or ``?`` (``x+`` is ``x`` then
    ``x*``); a leading ``^`` and a trailing ``$`` are implied, as Argo matches the whole name.
    """

    _META = set(".^$*+?()[]{}|\\")

    def __init__(self, tokens: list[tuple[str | None, str]]) -> None:
        self.tokens = tokens

    @classmethod
    def parse(cls, pattern: str) -> _Pattern | None:
        body = pattern.removeprefix("^")
        body = body[:-1] if body.endswith("$") and not body.endswith("\\$") else body
        tokens: list[tuple[str | None, str]] = []
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body) and body[i + 1] in cls._META:
                atom: str | None = body[i + 1]
                i += 2
            elif ch == ".":
                atom, i = None, i + 1
            elif ch in cls._META:
                return None
            else:
                atom, i = ch, i + 1
            quant = body[i] if i < len(body) and body[i] in "*+?" else ""
            i += 1 if quant else 0
            if quant == "+":
                tokens += [(atom, ""), (atom, "*")]
            else:
                tokens.append((atom, quant))
        return cls(tokens)

    def _closure(self, states: set[int]) -> set[int]:
        out, todo = set(states), list(states)
        while todo:
            i = todo.pop()
            if i < len(self.tokens) and self.tokens[i][1] in ("*", "?") and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return out

    def matches(self, name: str) -> bool:
        states = self._closure({0})
        for ch in name:
            nxt: set[int] = set()
            for i in states:
                if i < len(self.tokens) and self.tokens[i][0] in (None, ch):
                    nxt.add(i if self.tokens[i][1] == "*" else i + 1)
            states = self._closure(nxt)
            if not states:
                return False
        return len(self.tokens) in states


def _pattern(entry: Any, path: PathKey) -> _Pattern | None:
    """The entry's pattern; None when it is a valid expression beyond what ``_Pattern`` matches."""
    text = _text(_mapping(entry, path).get("metricName"), (*path, "metricName")) or ""
    if len(text) > MAX_CONDITION:
        raise _Malformed((*path, "metricName"), f"longer than {MAX_CONDITION} characters")
    try:
        re.compile(text)
    except re.error as exc:
        raise _Malformed((*path, "metricName"), f"not a regular expression: {exc}") from None
    return _Pattern.parse(text)


def _query(query: str, args: dict[str, Any], variables: dict[str, str],
           values: dict[str, str]) -> tuple[str, str | None, list[str]]:
    """``query`` with every ``{{args.x}}`` replaced; also the track it selects when a hash arg decides it."""
    if not query.strip():
        raise _Unconvertible("query", "the metric has no prometheus query")
    notes: list[str] = []
    track: str | None = None
    # A matcher on a pod-template-hash argument picks a side: it becomes the track selector.
    for name, arg in args.items():
        hash_of = (arg.get("valueFrom") or {}).get("podTemplateHashValue")
        if not hash_of or name in values:
            continue
        # Starting only at the beginning of a label name keeps the search linear in the query.
        matcher = re.compile(
            rf'(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*\s*(=~|=)\s*"\{{\{{\s*args\.{re.escape(name)}\s*\}}\}}"')
        if matcher.search(query):
            side = "canary" if hash_of == "Latest" else "stable"
            if track not in (None, side):
                raise _Unconvertible(f"args.{name}", "the query selects both the stable and the canary hash")
            track = side
            query = matcher.sub("{{track_selector}}", query)
            notes.append(f"args.{name} (pod-template hash, {hash_of}) -> {{{{track_selector}}}} of the {side} side")

    def pasted(name: str, value: Any) -> str:
        problem = unsafe_value(value if isinstance(value, str) else str(value))
        if problem is not None:
            raise _Unconvertible(f"args.{name}", f"{problem}; give a safe one with --set {name}=VALUE")
        return str(value)

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return pasted(name, values[name])
        if name in variables:
            return "{{" + variables[name] + "}}"
        arg = args.get(name)
        if arg is None:
            raise _Unconvertible(f"args.{name}", "the template declares no such argument")
        if "value" in arg and arg["value"] is not None:
            return pasted(name, arg["value"])
        source = arg.get("valueFrom")
        if source:
            kind = str(next(iter(source), "valueFrom"))
            raise _Unconvertible(f"args.{name}", f"its value comes from {kind}, which has no equivalent here; "
                                                 f"give it with --set {name}=VALUE or --var {name}=VARIABLE")
        if name in VARIABLE_BY_NAME:
            ours = VARIABLE_BY_NAME[name]
            notes.append(f"args.{name} -> {{{{{ours}}}}} (by its name; check the label's values match the "
                         f"Deployment's {'namespace' if ours == 'namespace' else 'name'})")
            return "{{" + ours + "}}"
        raise _Unconvertible(f"args.{name}", f"no value and no known meaning; map it with --var {name}=app "
                                             f"(a template variable) or --set {name}=VALUE")

    return _ARG.sub(replace, query), track, notes


def _conditions(success: Any, failure: Any) -> _Bounds:
    if success is None and failure is None:
        raise _Unconvertible("successCondition", "neither successCondition nor failureCondition is given "
                                                 "(Argo then never fails the metric): not a gate")
    if success is not None:
        bounds = _condition(str(success), failing=False)
        if failure is not None:
            bounds.notes.append(f"failureCondition {failure!r} dropped: with both conditions Argo treats the band "
                                "between them as inconclusive; the successCondition is kept")
        return bounds
    return _condition(str(failure), failing=True)


def _condition(text: str, *, failing: bool) -> _Bounds:
    """One condition as bounds that must hold for success (a failure condition is negated)."""
    bounds = _Bounds()
    terms = [t.strip() for t in re.split(r"\|\|", text.strip())]
    which = "failureCondition" if failing else "successCondition"
    if len(terms) > 1 and "&&" in text:
        raise _Unconvertible(which, f"{text!r}: mixes && and ||")
    for term in terms:
        term = term.strip().strip("()").strip() if term.startswith("(") and term.endswith(")") else term
        if _NAN.match(term):
            bounds.no_data = "fail" if failing else "pass"
            continue
        if _EMPTY.match(term) or _NOT_EMPTY.match(term):
            empty = bool(_EMPTY.match(term))
            if len(terms) > 1:
                raise _Unconvertible(which, f"{text!r}: len(result) combined with other terms")
            bounds.empty_means_success = empty != failing
            return bounds
        op, number = _comparison(term, which, text, failing)
        if failing:
            op = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}[op]
        if op in ("<", ">"):
            bounds.notes.append(f"{which} {text!r}: strict {op} read as {op}=")
        if op.startswith("<"):
            if bounds.max is not None:
                raise _Unconvertible(which, f"{text!r}: two upper bounds joined by ||")
            bounds.max = number
        else:
            if bounds.min is not None:
                raise _Unconvertible(which, f"{text!r}: two lower bounds joined by ||")
            bounds.min = number
    if bounds.min is None and bounds.max is None:
        raise _Unconvertible(which, f"{text!r}: only a NaN test, no bound on the value")
    if len([t for t in terms if not _NAN.match(t)]) > 1:
        raise _Unconvertible(which, f"{text!r}: alternatives of bounds (||) are not a threshold")
    return bounds


def _comparison(term: str, which: str, text: str, failing: bool) -> tuple[str, float]:
    for pattern in (_COMPARE, _ALL, _ANY):
        m = pattern.match(term)
        if m:
            # A threshold must hold for every series: all(...) as success, any(...) as failure, say that.
            if (pattern is _ANY and not failing) or (pattern is _ALL and failing):
                raise _Unconvertible(which, f"{text!r}: holds when some series hold; a threshold needs every "
                                            "series to hold")
            return m.group(1), float(m.group(2))
    m = _COMPARE_REVERSED.match(term)
    if m:
        return _FLIP[m.group(2)], float(m.group(1))
    raise _Unconvertible(which, f"{text!r}: not one of the shapes that convert (result[0] <= X, result[0] >= X, "
                                "len(result) == 0, isNaN(result[0]) || ..., all(result, {# < X}))")
