"""HTTP delay and abort through Istio fault injection on a VirtualService's http routes.

The whole ``spec.http`` list is recorded before injection and written back on revert (a merge
patch replaces lists whole), so whatever the routes held before, including a fault of their own,
is what they hold afterwards. Injection sets ``fault`` on the named route, or on every route when
none is named. The blast radius is the share of requests hit: the largest of the percentages.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from orchestrator.chaos import ledger
from orchestrator.chaos.faults.base import Alive, PlanContext, always
from orchestrator.chaos.models import LedgerEntry, Plan
from orchestrator.chaos.objects import VIRTUAL_SERVICE, Objects, ref
from orchestrator.errors import RefusedError
from orchestrator.specs.chaos import HttpFault

__all__ = ["HttpFaultInjector", "fault_block"]


def _seconds(value: float) -> str:
    return f"{value:g}s"


def fault_block(fault: HttpFault) -> dict[str, Any]:
    """Istio's ``HTTPFaultInjection`` for the spec."""
    block: dict[str, Any] = {}
    if fault.delay is not None:
        block["delay"] = {
            "percentage": {"value": fault.delay.percent},
            "fixedDelay": _seconds(fault.delay.fixed_delay.total_seconds()),
        }
    if fault.abort is not None:
        block["abort"] = {"percentage": {"value": fault.abort.percent}, "httpStatus": fault.abort.http_status}
    return block


class HttpFaultInjector:
    def __init__(self, objects: Objects) -> None:
        self.objects = objects

    def plan(self, ctx: PlanContext) -> Plan:
        fault = ctx.fault
        assert isinstance(fault, HttpFault)
        r = ref(VIRTUAL_SERVICE, fault.virtual_service, ctx.targets.namespace)
        vs = self.objects.get(r)
        routes = (vs.get("spec") or {}).get("http") or []
        if not routes:
            raise RefusedError(f"{r} has no http routes to inject a fault into")
        names = [rt.get("name") for rt in routes]
        if fault.route is not None and fault.route not in names:
            raise RefusedError(f"{r} has no http route named {fault.route!r} (routes: {names})")
        percent = max(
            fault.delay.percent if fault.delay else 0.0, fault.abort.percent if fault.abort else 0.0
        )
        total = len(ctx.targets.candidates)
        entry = LedgerEntry(
            run=ctx.run, fault="http-fault", object=r,
            action={"route": fault.route, "fault": fault_block(fault)},
            revert={"http": copy.deepcopy(routes)}, expires_at=ctx.expires_at,
        )
        what = []
        if fault.delay:
            delay = _seconds(fault.delay.fixed_delay.total_seconds())
            what.append(f"delay {fault.delay.percent:g}% of requests by {delay}")
        if fault.abort:
            what.append(f"abort {fault.abort.percent:g}% with HTTP {fault.abort.http_status}")
        where = f"route {fault.route!r}" if fault.route else f"all {len(routes)} http route(s)"
        return Plan(
            run=ctx.run, fault="http-fault", targets=ctx.targets, entries=[entry],
            affected_pods=math.ceil(total * percent / 100), total_pods=total,
            lines=[f"{' and '.join(what)} on {where} of {r}"],
        )

    def inject(self, entry: LedgerEntry, alive: Alive = always) -> str:
        if not alive():
            return f"{entry.object} left unchanged (the injection was cancelled)"

        def change(vs: dict[str, Any]) -> dict[str, Any] | None:
            routes = copy.deepcopy((vs.get("spec") or {}).get("http") or [])
            route = entry.action.get("route")
            for rt in routes:
                if route is None or rt.get("name") == route:
                    rt["fault"] = entry.action["fault"]
            return None if routes == (vs.get("spec") or {}).get("http") else {"spec": {"http": routes}}

        ledger.write_marked(self.objects, entry, change)
        return f"fault injected into {entry.object}"

    def revert(self, entry: LedgerEntry) -> str:
        done = ledger.restore(self.objects, entry, {"spec": {"http": entry.revert["http"]}})
        return f"restored the http routes of {entry.object}" if done else f"{entry.object} already restored"
