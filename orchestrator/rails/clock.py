"""The rails that only a clock decides: change freezes and staffed hours.

Pure functions of the policy, the kind of change, its namespace and a moment, so a workflow can
pass ``workflow.now()`` and a test any instant. Both are off unless the policy declares them: an
undeclared rail is ``skipped`` and says so, never a silent ``ok``. Times are compared as aware
datetimes; staffed hours are read in the policy's own timezone (so "09:00-17:00 Europe/Berlin"
follows daylight saving time by itself).
"""

from __future__ import annotations

from datetime import datetime

from orchestrator.rails.models import RailStatus, Verdict
from orchestrator.specs.policy import DAYS, PolicySpec

__all__ = ["FREEZE", "STAFFED_HOURS", "freeze", "staffed_hours"]

FREEZE = "change-freeze"
STAFFED_HOURS = "staffed-hours"


def freeze(policy: PolicySpec, kind: str, namespace: str | None, at: datetime) -> Verdict:
    declared = [f for f in policy.freezes if kind in f.kinds and (not f.namespaces or namespace in f.namespaces)]
    if not declared:
        return Verdict(rail=FREEZE, status=RailStatus.SKIPPED, reason=f"no change freeze declared for {kind}")
    for f in declared:
        if f.start <= at < f.end:
            left = f.end - at
            hours = left.total_seconds() / 3600
            return Verdict(
                rail=FREEZE, status=RailStatus.REFUSED,
                reason=f"change freeze {f.name!r} from {f.start.isoformat()} to {f.end.isoformat()} is in force "
                       f"(now {at.astimezone(f.start.tzinfo).isoformat(timespec='seconds')}, {hours:.1f} h left)",
            )
    upcoming = sorted((f for f in declared if f.start > at), key=lambda f: f.start)
    nxt = f"; next: {upcoming[0].name!r} at {upcoming[0].start.isoformat()}" if upcoming else ""
    return Verdict(rail=FREEZE, status=RailStatus.OK,
                   reason=f"outside all {len(declared)} declared freeze(s){nxt}")


def staffed_hours(policy: PolicySpec, kind: str, at: datetime) -> Verdict:
    hours = policy.staffed_hours
    if hours is None:
        return Verdict(rail=STAFFED_HOURS, status=RailStatus.SKIPPED, reason="no staffed hours declared")
    if kind not in hours.kinds:
        return Verdict(rail=STAFFED_HOURS, status=RailStatus.SKIPPED,
                       reason=f"staffed hours apply to {', '.join(hours.kinds)}, not {kind}")
    local = at.astimezone(hours.zone)
    day = DAYS[local.weekday()]
    window = f"{', '.join(hours.days)} {hours.start:%H:%M}-{hours.end:%H:%M} {hours.timezone}"
    inside = day in hours.days and hours.start <= local.time().replace(tzinfo=None) < hours.end
    if not inside:
        return Verdict(rail=STAFFED_HOURS, status=RailStatus.REFUSED,
                       reason=f"outside staffed hours ({window}): it is {day} {local:%H:%M} {hours.timezone}")
    return Verdict(rail=STAFFED_HOURS, status=RailStatus.OK,
                   reason=f"inside staffed hours ({window}): {day} {local:%H:%M}")
