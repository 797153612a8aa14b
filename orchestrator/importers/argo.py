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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from orchestrator.specs.checks import Check

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


@dataclass
class _Bounds:
    min: float | None = None
    max: float | None = None
    no_data: str | None = None
    empty_means_success: bool | None = None  # len(result) shapes
    notes: list[str] = field(default_factory=list)


def convert_documents(
    docs: Iterable[tuple[str, Any]],
    variables: Mapping[str, str] | None = None,
    values: Mapping[str, str] | None = None,
) -> list[Converted]:
    """Convert every Analysis template among ``docs`` (``(source, parsed YAML)`` pairs)."""
    results: list[Converted] = []
    for source, doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
            continue
        results.append(_template(source, doc, dict(variables or {}), dict(values or {})))
    return results


def _template(source: str, doc: dict[str, Any], variables: dict[str, str], values: dict[str, str]) -> Converted:
    name = str((doc.get("metadata") or {}).get("name", "?"))
    out = Converted(source=source, kind=str(doc["kind"]), name=name)
    where = f"{source}: {out.kind}/{name}"
    spec = doc.get("spec") or {}
    args = {str(a.get("name")): a for a in spec.get("args") or [] if isinstance(a, dict)}
    dry_run = [re.compile(str(d.get("metricName", ""))) for d in spec.get("dryRun") or [] if isinstance(d, dict)]
    if spec.get("measurementRetention"):
        out.skipped.append(Skipped(where, "measurementRetention",
                                   "a check keeps its last measurements in the rollout status; not configurable"))
    for metric in spec.get("metrics") or []:
        mname = str(metric.get("name", "?"))
        try:
            check, notes = _metric(metric, args, variables, values)
        except _Unconvertible as exc:
            out.skipped.append(Skipped(f"{where}: metric {mname}", exc.what, exc.reason))
            continue
        out.notes += [f"{where}: metric {mname}: {n}" for n in dict.fromkeys(notes)]
        if any(p.fullmatch(mname) for p in dry_run):
            out.skipped.append(Skipped(f"{where}: metric {mname}", "dryRun",
                                       "this project has no dry-run checks: the converted check gates the rollout; "
                                       "leave it out of the spec to keep it observational"))
        (out.analysis if check.count is not None else out.background).append(check)
    return out


def _metric(metric: dict[str, Any], args: dict[str, Any], variables: dict[str, str],
            values: dict[str, str]) -> tuple[Check, list[str]]:
    provider = metric.get("provider") or {}
    others = sorted(k for k in provider if k != "prometheus")
    if "prometheus" not in provider:
        raise _Unconvertible("provider", f"only the prometheus provider converts (this metric uses {others or 'none'})")
    prom = provider["prometheus"] or {}
    notes: list[str] = []
    for key in sorted(set(prom) - {"query", "address"}):
        raise _Unconvertible(f"prometheus.{key}", "per-check Prometheus settings (auth, headers, timeout) do not "
                                                  "exist here: the worker's Prometheus settings apply")
    if prom.get("address"):
        notes.append(f"prometheus.address {prom['address']} dropped: the worker's Prometheus URL is used")
    query, track, arg_notes = _query(str(prom.get("query", "")), args, variables, values)
    notes += arg_notes
    bounds = _conditions(metric.get("successCondition"), metric.get("failureCondition"))
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
    for argo, ours in (("interval", "interval"), ("initialDelay", "initialDelay"), ("failureLimit", "failureLimit"),
                       ("inconclusiveLimit", "inconclusiveLimit"), ("consecutiveErrorLimit", "consecutiveErrorLimit")):
        if metric.get(argo) is not None:
            check[ours] = metric[argo]
    if isinstance(check.get("failureLimit"), int) and check["failureLimit"] < 0:
        raise _Unconvertible("failureLimit", "a negative (unlimited) failureLimit never fails: not a gate")
    count = metric.get("count")
    if isinstance(count, str):  # Argo's count is an int-or-string
        if not count.strip().isdigit():
            raise _Unconvertible("count", f"count {count!r} is not a number (an argument reference?); give one")
        count = int(count)
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


def _query(query: str, args: dict[str, Any], variables: dict[str, str],
           values: dict[str, str]) -> tuple[str, str | None, list[str]]:
    """``query`` with every ``{{args.x}}`` replaced; also the track it selects when a hash arg decides it."""
    if not query.strip():
        raise _Unconvertible("query", "the metric has no prometheus query")
    notes: list[str] = []
    track: str | None = None
    # A matcher on a pod-template-hash argument picks a side: it becomes the track selector.
    for name, arg in args.items():
        hash_of = ((arg.get("valueFrom") or {}).get("podTemplateHashValue") if isinstance(arg, dict) else None)
        if not hash_of or name in values:
            continue
        matcher = re.compile(rf'[A-Za-z_][A-Za-z0-9_]*\s*(=~|=)\s*"\{{\{{\s*args\.{re.escape(name)}\s*\}}\}}"')
        if matcher.search(query):
            side = "canary" if hash_of == "Latest" else "stable"
            if track not in (None, side):
                raise _Unconvertible(f"args.{name}", "the query selects both the stable and the canary hash")
            track = side
            query = matcher.sub("{{track_selector}}", query)
            notes.append(f"args.{name} (pod-template hash, {hash_of}) -> {{{{track_selector}}}} of the {side} side")

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        if name in variables:
            return "{{" + variables[name] + "}}"
        arg = args.get(name)
        if arg is None:
            raise _Unconvertible(f"args.{name}", "the template declares no such argument")
        if "value" in arg and arg["value"] is not None:
            return str(arg["value"])
        source = arg.get("valueFrom")
        if source:
            kind = next(iter(source), "valueFrom")
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
