"""The two statistical check kinds: ``judge`` (canary vs control) and ``slo`` (multi-window burn rate).

Both sit in a check next to ``condition`` (see ``orchestrator.specs.checks.Check``): a check is a
threshold/relative check, a judge check or an SLO check, never two of them.

A judge compares the subject side (the canary, or a flag's treatment) with a control side (the
baseline or the stable, or the flag's control variant) on one kind of metric, chosen by the field
given::

    errors + requests   cumulative counters per side; the test is on the errors split between the
                        sides by their traffic shares (the error ratio canary/control)
    latency             a cumulative histogram (``_bucket`` series keeping ``le``); the test is on the
                        share of requests slower than the control's ``quantile`` (the tail in focus)
    gauge               one value per pod (CPU, memory); the test is on the relative difference of the
                        sides' means

Queries are *cumulative* (no ``rate()``): the judge reads the increase between its looks itself,
exactly and with counter resets handled. One query template serves both sides through
``{{track_selector}}`` (or ``{{variant}}`` in a flag ramp); ``control`` overrides a template for the
control side when its metric is labelled differently.

``tolerance`` is the regression that matters, written as people say it: ``1.2x`` or ``+20%``. The
judge promotes early only once it is confident the effect is within it; ``maxFalseRollback`` bounds the
probability of rolling back a version that is no worse than the control, for the whole rollout (it is
split over the rollout's judge checks, see ``orchestrator.gates.judge.alpha_per_check``).

An SLO check reads good/total or bad/total event counters (plain selectors: the ranges are built here)
and fails on the multi-window, multi-burn-rate rule of the SRE workbook.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, ValidationInfo, field_validator, model_validator

from orchestrator.specs.base import Strict
from orchestrator.specs.duration import Duration
from orchestrator.specs.promql import TEMPLATE_VAR, placeholders

# Template variables a query may use (besides the selector placeholder); kept in step with checks.py.
_SIDE_VARIABLES = frozenset({"track_selector", "variant"})


def parse_fraction(value: Any) -> float:
    """``1%`` -> 0.01, ``99.9%`` -> 0.999, ``0.01`` -> 0.01 (a bare number is a fraction)."""
    if isinstance(value, bool):
        raise ValueError("give a percentage such as 1% or a fraction such as 0.01")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and value.strip().endswith("%"):
        try:
            number = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage (e.g. 1%)") from None
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage (e.g. 1%) or a fraction (e.g. 0.01)") from None
    else:
        raise ValueError("give a percentage such as 1% or a fraction such as 0.01")
    if not math.isfinite(number) or not 0 < number < 1:
        raise ValueError(f"{value!r} must lie strictly between 0% and 100%")
    return number


def _format_fraction(value: float) -> str:
    return f"{value * 100:g}%"


def parse_objective(value: Any) -> float:
    """An SLO objective: ``99.9%``, ``0.999`` or ``99.9`` (a number above 1 is read as a percentage)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 1 < value < 100:
        return float(value) / 100
    return parse_fraction(value)


Fraction = Annotated[float, BeforeValidator(parse_fraction), PlainSerializer(_format_fraction, return_type=str)]

MIN_TOLERANCE = 1.01
"""The finest tolerance: the judge's grid is 1 % apart next to the tolerance (``gates.judge.OFFSETS``)."""

_FACTOR = re.compile(r"\s*(\d+(?:\.\d+)?)\s*x\s*")
_PERCENT = re.compile(r"\s*\+?\s*(\d+(?:\.\d+)?)\s*%\s*")


def parse_tolerance(value: Any) -> float:
    """The regression that matters as a factor > 1: ``1.2x`` -> 1.2, ``+10%`` -> 1.1, ``1.5`` -> 1.5."""
    if isinstance(value, bool):
        raise ValueError("write a tolerance as a factor (1.2x) or a percentage (+10%)")
    factor: float | None = None
    if isinstance(value, int | float):
        factor = float(value)
    elif isinstance(value, str):
        if m := _FACTOR.fullmatch(value):
            factor = float(m.group(1))
        elif m := _PERCENT.fullmatch(value):
            factor = 1 + float(m.group(1)) / 100
    if factor is None:
        raise ValueError(f"{value!r} is not a tolerance: write a factor (1.2x) or a percentage (+10%)")
    if not math.isfinite(factor) or not 1 < factor <= 100:
        raise ValueError(f"tolerance {value!r} must be above 1x (no change) and at most 100x")
    if factor < MIN_TOLERANCE - 1e-12:
        raise ValueError(
            f"tolerance {value!r} is finer than the judge can ever show: the smallest is +1% (1.01x), its "
            "resolution near the tolerance; a version could never be shown within a finer one"
        )
    return factor


def _format_tolerance(value: float) -> str:
    return f"{value:g}x"


Tolerance = Annotated[float, BeforeValidator(parse_tolerance), PlainSerializer(_format_tolerance, return_type=str)]


class Direction(StrEnum):
    HIGHER_IS_WORSE = "higherIsWorse"
    LOWER_IS_WORSE = "lowerIsWorse"


class JudgeKind(StrEnum):
    COUNTS = "counts"
    LATENCY = "latency"
    GAUGE = "gauge"


DEFAULT_TOLERANCE = {JudgeKind.COUNTS: 1.2, JudgeKind.LATENCY: 1.1, JudgeKind.GAUGE: 1.1}

PromQL = Annotated[str, Field(min_length=1, max_length=4000)]


_AGGREGATION = re.compile(
    r"\b(sum|avg|min|max|count|group|stddev|stdvar|topk|bottomk|quantile|count_values)\s*(\(|by\b|without\b)")
_GROUPING = re.compile(r"\b(by|without)\s*\(([^)]*)\)")
_PER_POD = frozenset({"pod", "instance", "pod_name", "kubernetes_pod_name"})


def _check_per_pod(query: str, what: str) -> str:
    """A counter or histogram query must keep one series per pod (or instance).

    The judge differences each series against its own last reading: an aggregate over pods goes down
    when one pod's series is missed (a failed scrape, a restart) and up again, which reads as a reset
    or, worse, double counts; per pod, only the pod concerned is affected. Per-pod series are also what
    the pod-to-pod spread is measured on.
    """
    if not _AGGREGATION.search(query):
        return query  # a bare selector keeps every label, the pod's among them
    for kind, labels in _GROUPING.findall(query):
        names = {label.strip() for label in labels.split(",") if label.strip()}
        if (kind == "by" and names & _PER_POD) or (kind == "without" and not names & _PER_POD):
            return query
    raise ValueError(
        f"the {what} query aggregates over pods: keep one series per pod (or instance), e.g. "
        "sum by (pod) (http_requests_total{...}) or, for a histogram, sum by (le, pod) (..._bucket{...}); "
        "a sum over pods loses counts when one pod's scrape fails"
    )


def _check_template(query: str) -> str:
    if query.count("{{") != len(TEMPLATE_VAR.findall(query)):
        raise ValueError("malformed template: every '{{' must be closed as {{name}}")
    placeholders(query)  # value placeholders only in quoted label values, selectors only as matchers
    if "rate(" in query.replace(" ", "") or "increase(" in query.replace(" ", ""):
        raise ValueError(
            "a judge reads cumulative counters itself (exactly, with resets handled): give the counter, "
            "e.g. sum by (pod) (http_requests_total{...}), not rate() or increase()"
        )
    return query


class ControlQueries(Strict):
    """Templates for the control side when its metric differs from the subject's."""

    errors: PromQL | None = None
    requests: PromQL | None = None
    latency: PromQL | None = None
    gauge: PromQL | None = None

    @field_validator("errors", "requests", "latency", "gauge")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @field_validator("errors", "requests", "latency")
    @classmethod
    def _per_pod(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_per_pod(value, f"control.{info.field_name}")


class Judge(Strict):
    """Canary vs control with a stated false-rollback bound; see the module docstring."""

    compare_to: Literal["stable", "baseline"] = Field(default="stable", alias="compareTo")
    errors: PromQL | None = None
    requests: PromQL | None = None
    latency: PromQL | None = None
    quantile: float = Field(default=0.99, gt=0.5, lt=1)
    gauge: PromQL | None = None
    control: ControlQueries = Field(default_factory=ControlQueries)
    tolerance: Tolerance | None = None
    max_false_rollback: Fraction = Field(default=0.01, alias="maxFalseRollback")
    direction: Direction = Direction.HIGHER_IS_WORSE
    warmup: Duration | None = None
    """Looks within this long of the judge's first look are not counted: a canary's cold start (caches,
    JIT, connection pools) is a real difference from a warm stable, not the version's. Prefer
    ``compareTo: baseline`` (fresh pods on both sides); declare this when judging against the stable."""
    negligible_rate: Fraction | None = Field(default=None, alias="negligibleRate")
    """An error rate so low that a ratio does not matter (e.g. 0.1%): a canary shown to stay below it is
    promoted even when too few errors exist to bound the ratio (counts judges, higher is worse)."""

    @field_validator("errors", "requests", "latency", "gauge")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else _check_template(value)

    @field_validator("errors", "requests", "latency")
    @classmethod
    def _per_pod(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _check_per_pod(value, str(info.field_name))

    @field_validator("max_false_rollback")
    @classmethod
    def _sane_alpha(cls, value: float) -> float:
        if value > 0.2:
            raise ValueError("maxFalseRollback above 20% rolls back too many good releases to mean anything")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Judge:
        kinds = [k for k, given in (("errors/requests", self.errors is not None or self.requests is not None),
                                    ("latency", self.latency is not None),
                                    ("gauge", self.gauge is not None)) if given]  # fmt: skip
        if len(kinds) != 1:
            raise ValueError("a judge compares one metric: give errors and requests, or latency, or gauge")
        if (self.errors is None) != (self.requests is None):
            raise ValueError("a count judge needs both errors and requests (cumulative counters)")
        for name in ("errors", "requests", "latency", "gauge"):
            subject = getattr(self, name)
            control = getattr(self.control, name)
            if control is not None and subject is None:
                raise ValueError(f"control.{name} is given but the judge has no {name} query")
            if subject is not None and control is None and not set(TEMPLATE_VAR.findall(subject)) & _SIDE_VARIABLES:
                raise ValueError(
                    f"the {name} query is rendered for both sides, so it must tell them apart with "
                    "{{track_selector}} (or {{variant}} in a flag ramp), or give control." + name
                )
        return self

    @property
    def kind(self) -> JudgeKind:
        if self.latency is not None:
            return JudgeKind.LATENCY
        if self.gauge is not None:
            return JudgeKind.GAUGE
        return JudgeKind.COUNTS

    @property
    def effective_tolerance(self) -> float:
        return self.tolerance if self.tolerance is not None else DEFAULT_TOLERANCE[self.kind]

    def queries(self) -> dict[str, tuple[str, str]]:
        """Each metric's (subject template, control template)."""
        out: dict[str, tuple[str, str]] = {}
        for name in ("errors", "requests", "latency", "gauge"):
            subject = getattr(self, name)
            if subject is not None:
                out[name] = (subject, getattr(self.control, name) or subject)
        return out


# A selector: a metric name with optional matchers; the burn-rate check builds the ranges around it.
_SELECTOR = re.compile(r"\s*[A-Za-z_:][A-Za-z0-9_:]*\s*(\{.*\})?\s*", re.S)


class BurnWindow(Strict):
    """Fail when the burn rate exceeds ``factor`` over both windows (the short one confirms it is still on)."""

    long: Duration
    short: Duration
    factor: float = Field(gt=0, le=1000)

    @model_validator(mode="after")
    def _order(self) -> BurnWindow:
        if self.short.total_seconds() <= 0 or self.short >= self.long:
            raise ValueError("the short window must be positive and shorter than the long one")
        return self


DEFAULT_WINDOWS = (
    BurnWindow(long=timedelta(hours=1), short=timedelta(minutes=5), factor=14.4),
    BurnWindow(long=timedelta(hours=6), short=timedelta(minutes=30), factor=6.0),
)


class BurnRate(Strict):
    """An SLO as good/total or bad/total event counters, gated on multi-window burn rates."""

    objective: Annotated[float, BeforeValidator(parse_objective), PlainSerializer(_format_fraction, return_type=str)]
    good: PromQL | None = None
    bad: PromQL | None = None
    total: PromQL
    windows: list[BurnWindow] = Field(default_factory=lambda: list(DEFAULT_WINDOWS), min_length=1, max_length=8)

    @field_validator("good", "bad", "total")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not _SELECTOR.fullmatch(value):
            raise ValueError(
                "give the counter as a selector, e.g. http_requests_total{app=\"{{app}}\",code=~\"5..\"}; "
                "the burn-rate check builds sum(increase(...[window])) for each window itself"
            )
        if value.count("{{") != len(TEMPLATE_VAR.findall(value)):
            raise ValueError("malformed template: every '{{' must be closed as {{name}}")
        placeholders(value)
        return value

    @model_validator(mode="after")
    def _events(self) -> BurnRate:
        if (self.good is None) == (self.bad is None):
            raise ValueError("give exactly one of good or bad (with total)")
        return self

    @property
    def error_budget(self) -> float:
        return 1 - self.objective
