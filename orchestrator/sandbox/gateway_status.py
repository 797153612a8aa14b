"""The sandbox's Gateway API controller: route status as a real gateway controller reports it.

A gateway controller reports only on routes attached to Gateways of its own class, so the sandbox reports
on an HTTPRoute's ``parentRefs`` that name an existing Gateway with ``spec.gatewayClassName: sandbox``
and leaves every other route's status alone (a route attached to a Gateway nobody implements has no
status, exactly as on a cluster, and the orchestrator shows its weight as unconfirmed).

For each such parent it writes, under ``controllerName: sandbox.orchestrator.dev/gateway-controller``:

* ``Accepted`` True (the sandbox accepts any route it can read);
* ``ResolvedRefs`` True when every Service ``backendRef`` exists in its namespace, else False with reason
  ``BackendNotFound`` naming the missing ones (a real gateway answers 500 for their share);
* ``observedGeneration`` = the route's ``metadata.generation`` on both, so readers can tell a status
  about the current spec from one about an older spec.

Entries written by other controllers are kept. The traffic generator (``traffic.py``) is the data plane;
this module is only the status half. Pure over store objects: ``route_status`` computes, the controller
pass writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

GATEWAY_CLASS = "sandbox"
CONTROLLER_NAME = "sandbox.orchestrator.dev/gateway-controller"
GROUP = "gateway.networking.k8s.io"

Obj = dict[str, Any]


def _meta(obj: Obj) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


def our_gateways(gateways: Iterable[Obj]) -> set[tuple[str, str]]:
    """(namespace, name) of every Gateway this controller implements."""
    return {
        (str(_meta(g).get("namespace")), str(_meta(g).get("name")))
        for g in gateways
        if (g.get("spec") or {}).get("gatewayClassName") == GATEWAY_CLASS
    }


def _condition(previous: list[Any], kind: str, ok: bool, reason: str, message: str, generation: int,
               stamp: str) -> Obj:
    status = "True" if ok else "False"
    for old in previous:
        # Unchanged conditions keep their transition time, as every controller does.
        if isinstance(old, dict) and (old.get("type"), old.get("status"), old.get("reason"),
                                      old.get("observedGeneration")) == (kind, status, reason, generation):
            return old
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "observedGeneration": generation, "lastTransitionTime": stamp}


def route_status(route: Obj, gateways: set[tuple[str, str]], services: set[tuple[str, str]], stamp: str) -> Obj | None:
    """The route's new ``status``, or None when this controller has nothing to say about it."""
    meta = _meta(route)
    namespace = str(meta.get("namespace"))
    generation = int(meta.get("generation") or 1)
    spec = route.get("spec") or {}
    refs = [
        r for r in spec.get("parentRefs") or []
        if isinstance(r, dict) and r.get("kind", "Gateway") == "Gateway" and r.get("group", GROUP) == GROUP
        and (str(r.get("namespace") or namespace), str(r.get("name"))) in gateways
    ]
    if not refs:
        return None
    missing = sorted({
        str(b.get("name"))
        for rule in spec.get("rules") or [] if isinstance(rule, dict)
        for b in rule.get("backendRefs") or [] if isinstance(b, dict)
        if b.get("kind", "Service") == "Service" and b.get("group", "") in ("", "core")
        and (str(b.get("namespace") or namespace), str(b.get("name"))) not in services
    })
    previous = [p for p in (route.get("status") or {}).get("parents") or [] if isinstance(p, dict)]
    others = [p for p in previous if p.get("controllerName") != CONTROLLER_NAME]
    ours: list[Obj] = []
    for ref in refs:
        before = next((p.get("conditions") or [] for p in previous
                       if p.get("controllerName") == CONTROLLER_NAME and p.get("parentRef") == ref), [])
        ours.append({
            "parentRef": ref,
            "controllerName": CONTROLLER_NAME,
            "conditions": [
                _condition(before, "Accepted", True, "Accepted", "Route is accepted", generation, stamp),
                _condition(before, "ResolvedRefs", not missing, "BackendNotFound" if missing else "ResolvedRefs",
                           f"services not found: {', '.join(missing)}" if missing else "All references resolved",
                           generation, stamp),
            ],
        })
    return {**(route.get("status") or {}), "parents": others + ours}
