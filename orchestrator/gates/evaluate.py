"""Evaluate one check once: render, query, judge, and record it all as a ``Measurement``.

Choices, each made to fail closed and to keep every decision explainable:

* The subject query is rendered with ``track`` = ``check.track`` on top of the given
  variables (namespace, app, image, version, ...); a ``track`` among them is overridden.
  ``{{track_selector}}`` becomes the side's label matcher (``track="canary"``, or
  ``track!~"canary|baseline"`` for the stable, whose pods carry no track label), built
  here from the closed set of tracks and never taken from the variables.
  A relative condition renders the same query again for the ``compareTo`` track.
  ``evaluate_sides`` is the same judgement with caller-chosen sides (a flag ramp
  compares the ramped variant with the control variant instead of two tracks).
* Threshold: every series must be within ``min``/``max``. With several series the
  measurement's ``value`` is the worst one (the one furthest past a bound when failing,
  else the one nearest the bound) and the message names its labels.
* Relative: each track's query must return exactly one series (aggregate with ``sum``
  or ``max``); anything else is an ERROR measurement saying so, because comparing
  series pairwise by labels would hide which pair decided. ratio = value / control,
  difference = value - control; a 0 / 0 ratio counts as 1 (both tracks equally
  clean), x / 0 as infinite. Every bound given must hold.
* No data: an empty result, a NaN value (0/0 ratios when nothing was served), or an
  empty / NaN control apply ``check.no_data``: fail -> FAILED, pass -> SUCCESSFUL,
  inconclusive -> INCONCLUSIVE. A series out of bounds still fails even when others
  have no data. ±Inf is a value, not missing data: a p99 latency of +Inf (beyond the
  last bucket) must fail a ``max`` bound even under ``noData: pass``.
* Errors: a non-retryable ``MetricError`` (unsafe variable, bad PromQL, refused
  credentials, a matrix result) becomes an ERROR measurement, counted against
  ``consecutiveErrorLimit``. Retryable errors (``UnreachableError``, 5xx) propagate so
  the activity is retried by Temporal instead of burning the error budget on an outage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from orchestrator.errors import MetricError
from orchestrator.gates.model import Measurement, Phase, Sample
from orchestrator.gates.prometheus import MetricProvider
from orchestrator.gates.template import render, track_selector
from orchestrator.specs.checks import Check, NoDataPolicy, Relative, Threshold


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its name in messages, what it is, and the variables rendering its query."""

    name: str
    variables: Mapping[str, str]
    kind: str = "track"
    selectors: Mapping[str, str] = field(default_factory=dict)  # selector placeholders, built by code


def evaluate(
    check: Check,
    provider: MetricProvider,
    variables: Mapping[str, str],
    at: datetime | None = None,
) -> Measurement:
    """Take one measurement of ``check`` at ``at`` (now when None), comparing tracks for relative checks."""
    if check.slo is not None:
        from orchestrator.gates.slo import evaluate_slo  # the SLO module builds on this one

        return evaluate_slo(check, provider, variables, at)
    subject = _track_side(str(check.track), variables)
    control = None
    if isinstance(check.condition, Relative):
        control = _track_side(check.condition.compare_to, variables)
    return evaluate_sides(check, provider, subject, control, at)


def _track_side(track: str, variables: Mapping[str, str]) -> Side:
    return Side(track, {**variables, "track": track}, selectors={"track_selector": track_selector(track)})


def evaluate_sides(
    check: Check,
    provider: MetricProvider,
    subject: Side,
    control: Side | None = None,
    at: datetime | None = None,
) -> Measurement:
    """Like ``evaluate``, with the sides chosen by the caller (a flag ramp compares variants, not tracks).

    ``control`` is required for a relative condition and ignored for a threshold.
    """
    when = at if at is not None else datetime.now(UTC)
    record = _Recorder(check, when)
    record.subject = subject.name
    if control is not None:
        record.control, record.control_kind = control.name, control.kind

    try:
        record.query = render(check.query, subject.variables, subject.selectors)
        record.values = provider.query(record.query, at)
        if isinstance(check.condition, Relative):
            if control is None:
                raise MetricError(f"check {check.name} is relative: give the control side", retryable=False)
            record.control_query = render(check.query, control.variables, control.selectors)
            record.control_values = provider.query(record.control_query, at)
    except MetricError as exc:
        if exc.retryable:
            raise
        return record(Phase.ERROR, str(exc))

    if isinstance(check.condition, Threshold):
        return _threshold(record, check.condition)
    if isinstance(check.condition, Relative):
        return _relative(record, check.condition)
    # A judge or SLO check has its own evaluation; reaching here is a caller's mistake, recorded, not raised.
    return record(Phase.ERROR, f"check {check.name} has no condition: evaluate it with its judge or slo")


class _Recorder:
    """Collects what was sent and received so every exit builds the same complete record."""

    def __init__(self, check: Check, at: datetime) -> None:
        self.check = check
        self.at = at
        self.query = check.query
        self.control_query: str | None = None
        self.values: list[Sample] = []
        self.control_values: list[Sample] = []
        self.subject: str = str(check.track)
        self.control: str = check.condition.compare_to if isinstance(check.condition, Relative) else ""
        self.control_kind = "track"

    def __call__(
        self, phase: Phase, message: str, value: float | None = None, control: float | None = None,
        *, no_data: bool = False,
    ) -> Measurement:
        return Measurement(
            no_data=no_data,
            check=self.check.name,
            phase=phase,
            value=value,
            control_value=control,
            values=self.values,
            control_values=self.control_values,
            query=self.query,
            control_query=self.control_query,
            message=message,
            at=self.at,
        )

    def no_data(self, detail: str, value: float | None = None, control: float | None = None) -> Measurement:
        policy = self.check.no_data
        if policy is NoDataPolicy.PASS:
            return self(Phase.SUCCESSFUL, f"{detail} (allowed by noData: pass)", value, control, no_data=True)
        if policy is NoDataPolicy.INCONCLUSIVE:
            return self(Phase.INCONCLUSIVE, f"{detail} (noData: inconclusive)", value, control, no_data=True)
        return self(Phase.FAILED, detail, value, control, no_data=True)


def _threshold(record: _Recorder, bounds: Threshold) -> Measurement:
    present = [s for s in record.values if not math.isnan(s.value)]
    failing = [(s, why) for s in present if (why := _outside(s.value, bounds))]
    several = len(record.values) > 1

    if failing:
        # Furthest past its bound first, so the message shows the worst offender.
        failing.sort(key=lambda f: -_excess(f[0].value, bounds))
        worst, why = failing[0]
        message = why + (f" for {_labels(worst)}" if several else "")
        if len(failing) > 1:
            message += f" (+{len(failing) - 1} more series out of bounds)"
        return record(Phase.FAILED, message, worst.value)

    missing = len(record.values) - len(present)
    if not present:
        return record.no_data("no data" if not record.values else "no data (value is NaN)")
    nearest = max(present, key=lambda s: -_margin(s.value, bounds))
    within = _within(nearest.value, bounds) + (f" for {_labels(nearest)}" if several else "")
    if missing:
        return record.no_data(f"{within}; no data for {missing} of {len(record.values)} series", nearest.value)
    return record(Phase.SUCCESSFUL, within, nearest.value)


def _relative(record: _Recorder, rel: Relative) -> Measurement:
    subject, other = record.subject, record.control
    for name, samples in ((subject, record.values), (other, record.control_values)):
        if len(samples) > 1:
            return record(
                Phase.ERROR,
                f"a relative check needs one series per {record.control_kind}; the {name} query returned "
                f"{len(samples)} (aggregate it with sum() or max())",
            )
    value = _single(record.values)
    control = _single(record.control_values)
    if value is None:
        return record.no_data(f"no data for {subject}", None, control)
    if control is None:
        return record.no_data(f"no data for the control {record.control_kind} {other}", value, None)

    ratio = value / control if control != 0 else _divide_by_zero(value)
    difference = value - control
    checks = (
        ("ratio", ratio, rel.max_ratio, rel.min_ratio, "maxRatio", "minRatio"),
        ("difference", difference, rel.max_difference, rel.min_difference, "maxDifference", "minDifference"),
    )
    compared = f"({subject} {_fmt(value)}, {other} {_fmt(control)})"
    held: list[str] = []
    for what, got, upper, lower, upper_name, lower_name in checks:
        if upper is not None:
            if not got <= upper:
                return record(
                    Phase.FAILED,
                    f"{what} {_fmt(got)} > {upper_name} {_fmt(upper)} {compared}",
                    value,
                    control,
                )
            held.append(f"{what} {_fmt(got)} <= {upper_name} {_fmt(upper)}")
        if lower is not None:
            if not got >= lower:
                return record(
                    Phase.FAILED,
                    f"{what} {_fmt(got)} < {lower_name} {_fmt(lower)} {compared}",
                    value,
                    control,
                )
            held.append(f"{what} {_fmt(got)} >= {lower_name} {_fmt(lower)}")
    return record(Phase.SUCCESSFUL, f"{', '.join(held)} {compared}", value, control)


def _divide_by_zero(value: float) -> float:
    # 0 / 0 means both tracks are equally clean, not "no data": the series exist.
    return 1.0 if value == 0 else math.copysign(math.inf, value)


def _single(samples: Sequence[Sample]) -> float | None:
    if not samples or math.isnan(samples[0].value):
        return None
    return samples[0].value


def _outside(value: float, bounds: Threshold) -> str:
    if bounds.max is not None and value > bounds.max:
        return f"{_fmt(value)} > max {_fmt(bounds.max)}"
    if bounds.min is not None and value < bounds.min:
        return f"{_fmt(value)} < min {_fmt(bounds.min)}"
    return ""


def _within(value: float, bounds: Threshold) -> str:
    if bounds.min is not None and bounds.max is not None:
        return f"{_fmt(bounds.min)} <= {_fmt(value)} <= {_fmt(bounds.max)}"
    if bounds.max is not None:
        return f"{_fmt(value)} <= max {_fmt(bounds.max)}"
    return f"{_fmt(value)} >= min {_fmt(bounds.min)}"


def _margin(value: float, bounds: Threshold) -> float:
    """Distance to the nearest bound (smaller = closer to failing)."""
    distances = [b - value for b in (bounds.max,) if b is not None]
    distances += [value - b for b in (bounds.min,) if b is not None]
    return min(distances)


def _excess(value: float, bounds: Threshold) -> float:
    return -_margin(value, bounds)


def _labels(sample: Sample) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:.4g}"
