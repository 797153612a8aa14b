"""Metric checks: the vocabulary shared by canary gates, flag-ramp gates and chaos steady-state hypotheses.

A check is a templated PromQL query plus a condition. Each evaluation yields one
measurement (successful, failed, inconclusive or error); the check's limits turn the
series of measurements into a verdict. Missing data is a decision of its own
(``noData``), and its default is to fail: a gate that sees nothing must never promote.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from orchestrator.specs.base import Strict
from orchestrator.specs.duration import Duration
from orchestrator.specs.judge import BurnRate, Judge
from orchestrator.specs.promql import TEMPLATE_VAR, placeholders


class NoDataPolicy(StrEnum):
    FAIL = "fail"
    PASS = "pass"
    INCONCLUSIVE = "inconclusive"


class Track(StrEnum):
    STABLE = "stable"
    CANARY = "canary"
    BASELINE = "baseline"


class Threshold(Strict):
    """Absolute bounds on the value (every returned series must hold)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Threshold:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class Relative(Strict):
    """The value for the subject track compared with the same query for a control track."""

    compare_to: Literal["stable", "baseline"] = Field(alias="compareTo")
    max_ratio: float | None = Field(default=None, alias="maxRatio", gt=0)
    min_ratio: float | None = Field(default=None, alias="minRatio", ge=0)
    max_difference: float | None = Field(default=None, alias="maxDifference")
    min_difference: float | None = Field(default=None, alias="minDifference")

    @model_validator(mode="after")
    def _one_bound(self) -> Relative:
        if all(
            v is None for v in (self.max_ratio, self.min_ratio, self.max_difference, self.min_difference)
        ):
            raise ValueError("give maxRatio, minRatio, maxDifference or minDifference")
        return self


def _condition_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "relative" if "compareTo" in value or "compare_to" in value else "threshold"
    return "relative" if isinstance(value, Relative) else "threshold"


Condition = Annotated[
    Annotated[Threshold, Tag("threshold")] | Annotated[Relative, Tag("relative")],
    Discriminator(_condition_kind),
]


class OnInconclusive(Strict):
    """What a run does when a gate cannot decide: inconclusive, not enough traffic, or unmeasurable.

    ``pause`` holds where it is (traffic, flag percentage) and notifies; a human resumes (the gate is
    measured again), promotes or aborts; after ``timeout`` the run rolls back. ``rollback`` rolls back at
    once. Either way a gate that cannot decide never promotes.
    """

    action: Literal["pause", "rollback"] = "pause"
    timeout: Duration = timedelta(hours=1)

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("timeout must be greater than 0")
        return value


class Check(Strict):
    """One PromQL query and the condition its result must meet, or a ``judge`` or an ``slo`` check.

    Exactly one of ``condition`` (with ``query``), ``judge`` and ``slo`` is given; the last two carry
    their own queries (see ``orchestrator.specs.judge``).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=63)]
    query: str = ""
    condition: Condition | None = None
    judge: Judge | None = None
    slo: BurnRate | None = None
    interval: Duration = timedelta(seconds=30)
    count: Annotated[int | None, Field(ge=1)] = None
    failure_limit: Annotated[int, Field(alias="failureLimit", ge=0)] = 0
    inconclusive_limit: Annotated[int, Field(alias="inconclusiveLimit", ge=0)] = 0
    consecutive_error_limit: Annotated[int, Field(alias="consecutiveErrorLimit", ge=0)] = 4
    no_data: NoDataPolicy = Field(default=NoDataPolicy.FAIL, alias="noData")
    track: Track = Track.CANARY
    initial_delay: Duration = Field(default=timedelta(0), alias="initialDelay")
    # A series that has not appeared yet is not "no data": the engine keeps looking (uncounted) for this
    # long after the subject began receiving traffic; after that, or once data was seen, noData applies.
    wait_for_data: Duration = Field(default=timedelta(minutes=2), alias="waitForData")

    @field_validator("query")
    @classmethod
    def _known_variables(cls, query: str) -> str:
        unknown = sorted({m for m in TEMPLATE_VAR.findall(query) if m not in TEMPLATE_VARIABLES})
        if unknown:
            raise ValueError(
                f"unknown template variable {{{{{unknown[0]}}}}} (known: {', '.join(sorted(TEMPLATE_VARIABLES))})"
            )
        if query.count("{{") != len(TEMPLATE_VAR.findall(query)):
            raise ValueError("malformed template: every '{{' must be closed as {{name}}")
        placeholders(query)  # value placeholders only in quoted label values, selectors only as matchers
        return query

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        given = [k for k, v in (("condition", self.condition), ("judge", self.judge), ("slo", self.slo)) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of condition (with query), judge or slo")
        if self.condition is not None and not self.query:
            raise ValueError("a check with a condition needs a query")
        if self.condition is None and self.query:
            raise ValueError(f"a {given[0]} check carries its own queries: remove query")
        inner = [*(self.judge.queries().values() if self.judge else ())]
        templates = [q for pair in inner for q in pair]
        if self.slo is not None:
            templates += [q for q in (self.slo.good, self.slo.bad, self.slo.total) if q]
        for template in templates:
            unknown = sorted({m for m in TEMPLATE_VAR.findall(template) if m not in TEMPLATE_VARIABLES})
            if unknown:
                raise ValueError(f"unknown template variable {{{{{unknown[0]}}}}} in {template!r}")
            placeholders(template)  # the same placement rules as a condition's query
        return self

    @field_validator("interval")
    @classmethod
    def _positive_interval(cls, value: timedelta) -> timedelta:
        if value.total_seconds() <= 0:
            raise ValueError("interval must be greater than 0")
        return value

    @model_validator(mode="after")
    def _sides_selectable(self) -> Check:
        # Stable pods carry no track label on a real cluster: track="stable" would select nothing.
        names = set(TEMPLATE_VAR.findall(self.query))
        relative = isinstance(self.condition, Relative)
        compare_to = self.condition.compare_to if isinstance(self.condition, Relative) else None
        stable_side = self.track is Track.STABLE or compare_to == "stable"
        if "track" in names and stable_side:
            raise ValueError(
                "{{track}} cannot select the stable side (stable pods have no track label); "
                "use the matcher {{track_selector}}, e.g. x{app=\"{{app}}\",{{track_selector}}}"
            )
        if relative and not names & SIDE_VARIABLES:
            raise ValueError(
                "a relative check renders its query for both sides, so the query must tell them apart "
                "with {{track_selector}} (or {{variant}} in a flag ramp)"
            )
        return self


TEMPLATE_VARIABLES = frozenset(
    {"namespace", "app", "track", "track_selector", "image", "version", "target", "variant"}
)
SIDE_VARIABLES = frozenset({"track", "track_selector", "variant"})  # what differs between a relative check's sides
