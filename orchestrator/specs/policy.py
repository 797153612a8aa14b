"""The ``RailsPolicy`` file: every setting of the pre-flight rails, in one validated document.

The operator writes it (the chart ships it as a ConfigMap); no spec can widen it, which is
why none of this lives in canary, flag or chaos specs. It is found through ``--policy`` or
``ORCHESTRATOR_POLICY``; without one, the defaults below apply (and, for the chaos
namespaces only, the older ``ORCHESTRATOR_CHAOS_*`` variables, so existing installs keep
working). Shape::

    apiVersion: orchestrator.dev/v1
    kind: RailsPolicy
    metadata: {name: production}
    spec:
      namespaces: {allowed: ["shop"], protected: ["payments"]}   # chaos targets ("*": any unprotected)
      recentDeployments: {quietPeriod: 30m, kinds: [chaos]}      # any rollout of a target workload
      incidents: {matchLabels: {severity: critical, namespace: "{{namespace}}"}}
      health:                                                    # declared health queries
        - name: checkout-burn-rate
          query: slo:burn_rate1h{app="{{app}}"}
          max: 1
          appliesTo: [{namespace: shop, app: checkout}]            # the target or its dependents
      freezes:                                                   # off unless declared
        - {name: holidays, start: "2026-12-24T00:00:00+01:00", end: "2026-12-27T00:00:00+01:00"}
      staffedHours:                                              # off unless declared
        timezone: Europe/Berlin
        days: [mon, tue, wed, thu, fri]
        start: "09:00"
        end: "17:00"

Errors read ``file:line: field: message`` and exit 2, exactly as spec files, because the same
YAML reader (``orchestrator.specs.loader``) reports them. What ``validate`` refuses, so that no rail
can fail later for a reason the file already shows:

* alert labels (``incidents.matchLabels``) become ``name="value"`` matchers: a name is a Prometheus
  label name (not a reserved ``__`` one) and a value is the placeholder-safe charset of
  ``orchestrator.specs.promql`` around its placeholders, so no value can leave its quotes;
* placeholders in alert labels and health queries are the ones a rail can fill (``POLICY_VARIABLES``):
  a misspelt ``{{namspace}}`` would otherwise make the rail ``skipped`` for every target. Health
  queries get the full template check of a gate's query (closed ``{{...}}``, value placeholders only
  inside quoted label values);
* staffed hours are local times of day without an offset (the zone is ``timezone``, an IANA key such
  as ``Europe/Berlin``, never a path the zone loader would open).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field, ValidationError, field_validator, model_validator

from orchestrator.errors import SpecError
from orchestrator.specs.base import MAX_CHECKS, MAX_NAMES, K8sName, Metadata, Strict, first_duplicate
from orchestrator.specs.checks import NoDataPolicy
from orchestrator.specs.duration import Duration
from orchestrator.specs.loader import load_document, quoted, read_spec_text
from orchestrator.specs.promql import TEMPLATE_VAR, placeholders, unsafe_value

__all__ = [
    "ENV_VAR",
    "POLICY_VARIABLES",
    "Freeze",
    "HealthQuery",
    "Kind",
    "PolicySpec",
    "RailsPolicy",
    "StaffedHours",
    "load_policy",
    "policy_from_env",
]

ENV_VAR = "ORCHESTRATOR_POLICY"

Kind = Literal["canary", "flag", "chaos"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_KINDS: list[Kind] = ["canary", "flag", "chaos"]

# What a rail knows about its target (orchestrator.rails.signals.variables): nothing else can be filled in.
POLICY_VARIABLES = frozenset({"namespace", "app"})
_PROM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# An IANA key: letters, digits and _+- in /-separated parts; never '.', so never a relative path.
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+-]{1,32}(/[A-Za-z0-9_+-]{1,32}){0,3}")


# A freeze's or health query's name is printed inside one-line verdicts: no control characters (newlines).
Title = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _known_placeholders(text: str) -> None:
    """Every ``{{...}}`` of ``text`` is closed and names a variable the rails can fill."""
    if "{{" in TEMPLATE_VAR.sub("", text):
        raise ValueError("malformed template: every '{{' must be closed as {{name}}")
    unknown = sorted(set(TEMPLATE_VAR.findall(text)) - POLICY_VARIABLES)
    if unknown:
        raise ValueError(
            f"unknown template variable {{{{{unknown[0]}}}}} (known: {', '.join(sorted(POLICY_VARIABLES))})"
        )


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _chaos_only() -> list[Kind]:
    return ["chaos"]


class Namespaces(Strict):
    """Where chaos may act; kube-system & co. and the orchestrator's own namespace are always protected."""

    allowed: list[str] = Field(default_factory=list, max_length=MAX_NAMES)
    protected: list[K8sName] = Field(default_factory=list, max_length=MAX_NAMES)

    @field_validator("allowed")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if name != "*" and (len(name) > 63 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)):
                raise ValueError(f"{quoted(name)} is not a namespace name (or \"*\" for any unprotected namespace)")
        return value


class RecentDeployments(Strict):
    quiet_period: Duration = Field(default=timedelta(minutes=30), alias="quietPeriod")
    kinds: list[Kind] = Field(default_factory=_chaos_only)


class Incidents(Strict):
    """Firing alerts that mean an incident is under way on the target: ``ALERTS{alertstate="firing", ...}``.

    Values may use ``{{namespace}}`` and ``{{app}}``; an empty mapping turns the rail off.
    """

    match_labels: dict[str, str] = Field(
        default_factory=lambda: {"severity": "critical", "namespace": "{{namespace}}"}, alias="matchLabels",
        max_length=MAX_NAMES,
    )
    kinds: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS))

    @field_validator("match_labels")
    @classmethod
    def _matchers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _PROM_LABEL.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{quoted(name)} is not a Prometheus label name (or is a reserved __ one)")
            try:
                _known_placeholders(text)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
            # The literal text around the placeholders lands inside the quotes too: the same charset.
            problem = unsafe_value(TEMPLATE_VAR.sub("x", text))
            if problem is not None:
                raise ValueError(f"{name}: {problem.replace(repr('x'), repr(text))}")
        return value


class AppliesTo(Strict):
    namespace: K8sName | None = None
    app: K8sName | None = None


class HealthQuery(Strict):
    """A query that must be healthy: every series within ``min``/``max``; no data follows ``noData``."""

    name: Title
    query: Annotated[str, Field(min_length=1)]
    min: float | None = None
    max: float | None = None
    no_data: NoDataPolicy = Field(default=NoDataPolicy.FAIL, alias="noData")
    applies_to: list[AppliesTo] = Field(default_factory=list, alias="appliesTo", max_length=MAX_NAMES)  # empty: all
    kinds: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS))

    @field_validator("query")
    @classmethod
    def _template(cls, value: str) -> str:
        # The same rules a gate's query obeys, so the rail can never refuse to render it later.
        _known_placeholders(value)
        placeholders(value)
        return value

    @model_validator(mode="after")
    def _bounds(self) -> HealthQuery:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is greater than max")
        return self


class Freeze(Strict):
    """A change freeze (or maintenance window): nothing of ``kinds`` starts between ``start`` and ``end``."""

    name: Title
    start: datetime
    end: datetime
    kinds: list[Kind] = Field(default_factory=lambda: list(ALL_KINDS))
    namespaces: list[K8sName] = Field(default_factory=list, max_length=MAX_NAMES)  # empty: every namespace

    @field_validator("start", "end")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("give a timezone, e.g. 2026-12-24T00:00:00+01:00 or ...Z")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class StaffedHours(Strict):
    """When someone is there to respond: ``kinds`` start only on ``days`` between ``start`` and ``end``."""

    timezone: str
    days: list[Day] = Field(default_factory=lambda: list(DAYS[:5]), min_length=1)
    start: time
    end: time
    kinds: list[Kind] = Field(default_factory=_chaos_only)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        unknown = ValueError(f"unknown timezone {quoted(value)} (an IANA name such as Europe/Berlin)")
        # The zone loader opens files named by the key: only a well-formed key that the zone database lists.
        zones = _zones()
        if not _ZONE_KEY.fullmatch(value) or (zones and value not in zones):
            raise unknown
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise unknown from None
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _written_time(cls, value: Any) -> Any:
        if isinstance(value, bool | int | float):
            # Unquoted, YAML 1.1 reads 10:00 as the sexagesimal number 600.
            raise ValueError(f"{quoted(value)} is not a time of day: write it in quotes, e.g. \"09:00\"")
        if not isinstance(value, str | time):
            raise ValueError("expected a time of day such as \"09:00\"")
        return value

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("write the local time without an offset (e.g. \"10:00\"); the zone is timezone")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> StaffedHours:
        if self.end <= self.start:
            raise ValueError("end must be after start (hours that span midnight: declare two days' worth)")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class PolicySpec(Strict):
    namespaces: Namespaces = Field(default_factory=Namespaces)
    recent_deployments: RecentDeployments = Field(default_factory=RecentDeployments, alias="recentDeployments")
    incidents: Incidents = Field(default_factory=Incidents)
    health: list[HealthQuery] = Field(default_factory=list, max_length=MAX_CHECKS)
    freezes: list[Freeze] = Field(default_factory=list, max_length=MAX_NAMES)
    staffed_hours: StaffedHours | None = Field(default=None, alias="staffedHours")
    capacity: bool = True  # canary and baseline pods must fit quota and node allocatable

    @model_validator(mode="after")
    def _unique(self) -> PolicySpec:
        dupe = first_duplicate([h.name for h in self.health])
        if dupe is not None:
            raise ValueError(f"health query names must be unique; {dupe!r} appears more than once")
        return self


class RailsPolicy(Strict):
    api_version: Literal["orchestrator.dev/v1"] = Field(default="orchestrator.dev/v1", alias="apiVersion")
    kind: Literal["RailsPolicy"] = "RailsPolicy"
    metadata: Metadata = Field(default_factory=lambda: Metadata(name="default"))
    spec: PolicySpec = Field(default_factory=PolicySpec)
    source: str = Field(default="(defaults)", exclude=True)  # where it was read from, for messages


def load_text(text: str, source: str) -> RailsPolicy:
    return load_document(text, source, RailsPolicy, "RailsPolicy", "a policy is")


def load_policy(path: str | Path) -> RailsPolicy:
    return load_text(read_spec_text(path), str(path))


def policy_from_env(path: str | None = None, env: Mapping[str, str] | None = None) -> RailsPolicy:
    """``path`` (``--policy``), else ``$ORCHESTRATOR_POLICY``, else the defaults.

    The defaults take the chaos namespaces from the older variables ``ORCHESTRATOR_CHAOS_NAMESPACES`` and
    ``ORCHESTRATOR_CHAOS_PROTECTED``, so an install without a policy file behaves as before.
    """
    e = os.environ if env is None else env
    chosen = path or e.get(ENV_VAR) or None
    if chosen:
        return load_policy(chosen)
    allowed = [n.strip() for n in e.get("ORCHESTRATOR_CHAOS_NAMESPACES", "").split(",") if n.strip()]
    protected = [n.strip() for n in e.get("ORCHESTRATOR_CHAOS_PROTECTED", "").split(",") if n.strip()]
    try:
        namespaces = Namespaces(allowed=allowed, protected=protected)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        var = "ORCHESTRATOR_CHAOS_NAMESPACES" if first["loc"][0] == "allowed" else "ORCHESTRATOR_CHAOS_PROTECTED"
        raise SpecError([f"<environment>:0: {var}: {first['msg'].removeprefix('Value error, ')}"]) from None
    return RailsPolicy(spec=PolicySpec(namespaces=namespaces))
