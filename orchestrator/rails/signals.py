"""The rails Prometheus decides: ongoing incidents (firing alerts) and declared health queries.

``incidents`` asks ``ALERTS{alertstate="firing", <policy matchLabels>}`` with ``{{namespace}}``
and ``{{app}}`` rendered for the target; any series is an ongoing incident and refuses, naming
the alerts. ``health`` evaluates each declared query that applies to the target (its own, or a
dependency's such as an upstream's SLO burn rate) and refuses when a series leaves ``min``/``max``
or, by default, when the query has no data. Values are rendered through the gates' template
rules, so a target name can never change a query's shape. A placeholder the target has no value for
(``{{app}}`` for a flag ramp that names no app) makes that query, or the alert labels, not applicable
to the target, and the verdict says so; a misspelt placeholder never gets this far (the policy is
refused when it is loaded).
"""

from __future__ import annotations

import math

from orchestrator.gates.prometheus import MetricProvider
from orchestrator.gates.template import render
from orchestrator.rails.models import RailStatus, RailTarget, Verdict
from orchestrator.specs.checks import NoDataPolicy
from orchestrator.specs.policy import HealthQuery, PolicySpec
from orchestrator.specs.promql import TEMPLATE_VAR

__all__ = ["HEALTH", "INCIDENTS", "health", "incidents", "incidents_query", "variables"]

INCIDENTS = "incidents"
HEALTH = "health"


def variables(target: RailTarget) -> dict[str, str]:
    out = {}
    if target.namespace:
        out["namespace"] = target.namespace
    if target.app:
        out["app"] = target.app
    return out


def incidents_query(policy: PolicySpec, target: RailTarget) -> str | None:
    """The alert query for ``target``, or None when it names no value for a placeholder of the alert labels.

    The policy's labels are checked when it is loaded (names, placeholders, the value charset), and the
    rendering checks the target's values, so no label or value can change the query's shape.
    """
    wanted = policy.incidents.match_labels
    template = 'ALERTS{alertstate="firing",' + ",".join(f'{k}="{v}"' for k, v in sorted(wanted.items())) + "}"
    if set(TEMPLATE_VAR.findall(template)) - set(variables(target)):
        return None
    return render(template, variables(target))


def incidents(metrics: MetricProvider, policy: PolicySpec, kind: str, target: RailTarget) -> Verdict:
    wanted = policy.incidents.match_labels
    if not wanted or kind not in policy.incidents.kinds:
        return Verdict(rail=INCIDENTS, status=RailStatus.SKIPPED, reason=f"no incident alerts declared for {kind}")
    query = incidents_query(policy, target)
    if query is None:
        missing = sorted(set(TEMPLATE_VAR.findall(",".join(wanted.values()))) - set(variables(target)))
        # e.g. {{app}} for a flag ramp that names no app: the rail cannot be aimed at this target.
        return Verdict(rail=INCIDENTS, status=RailStatus.SKIPPED,
                       reason=f"not applicable: {target.describe()} has no {missing[0]} for the alert labels")
    firing = metrics.query(query)
    if firing:
        names = sorted({s.labels.get("alertname", "?") for s in firing})
        return Verdict(rail=INCIDENTS, status=RailStatus.REFUSED,
                       reason=f"{len(firing)} alert(s) firing for the target: {', '.join(names)} ({query})")
    return Verdict(rail=INCIDENTS, status=RailStatus.OK, reason=f"no alert firing ({query})")


def _applies(q: HealthQuery, kind: str, target: RailTarget) -> bool:
    if kind not in q.kinds:
        return False
    if not q.applies_to:
        return True
    return any((a.namespace is None or a.namespace == target.namespace) and (a.app is None or a.app == target.app)
               for a in q.applies_to)


def _bounds(q: HealthQuery) -> str:
    parts = ([f">= {q.min:g}"] if q.min is not None else []) + ([f"<= {q.max:g}"] if q.max is not None else [])
    return " and ".join(parts)


def health(metrics: MetricProvider, policy: PolicySpec, kind: str, target: RailTarget) -> Verdict:
    queries = [q for q in policy.health if _applies(q, kind, target)]
    if not queries:
        return Verdict(rail=HEALTH, status=RailStatus.SKIPPED,
                       reason=f"no health query declared for {target.describe()}")
    seen = []
    skipped = []
    for q in queries:
        missing = sorted(set(TEMPLATE_VAR.findall(q.query)) - set(variables(target)))
        if missing:
            # As for the alert labels: a query about {{app}} cannot be aimed at a ramp that names no app.
            skipped.append(f"{q.name}: not applicable ({target.describe()} has no {missing[0]})")
            continue
        query = render(q.query, variables(target))
        values = [s.value for s in metrics.query(query)]
        finite = [v for v in values if math.isfinite(v)]
        if not finite:
            if q.no_data is NoDataPolicy.PASS:
                seen.append(f"{q.name}: no data (noData: pass)")
                continue
            return Verdict(rail=HEALTH, status=RailStatus.REFUSED,
                           reason=f"{q.name}: no data (noData: {q.no_data.value}) from {query}")
        bad = [v for v in finite if (q.min is not None and v < q.min) or (q.max is not None and v > q.max)]
        if bad:
            worst = max(bad, key=lambda v: abs(v - (q.max if q.max is not None else q.min or 0.0)))
            return Verdict(rail=HEALTH, status=RailStatus.REFUSED,
                           reason=f"{q.name} = {worst:.4g}, wanted {_bounds(q)} ({query})")
        shown = ", ".join(f"{v:.4g}" for v in finite[:3])
        seen.append(f"{q.name} = {shown} ({_bounds(q)})")
    if not seen:
        return Verdict(rail=HEALTH, status=RailStatus.SKIPPED, reason="; ".join(skipped))
    return Verdict(rail=HEALTH, status=RailStatus.OK, reason="; ".join(seen + skipped))
