"""Gateway API: canary weight as the weights of two backendRefs of an HTTPRoute.

Every rule of ``httpRoute`` whose backendRefs include the stable Service gets ``stable = 100 - w`` and
``canary = w``; the canary backendRef is added (a copy of the stable one, renamed) when missing and removed
again by ``reset``. Nothing else in the route is touched: the whole object is read, two numbers (and at
most one list item per rule) change, and it is written back with the resourceVersion of the read.

The canary Service is derived from the stable one (same ports, selector plus ``orchestrator.dev/role:
canary``) when it does not exist, and deleted by ``reset`` only if the orchestrator created it. For the
weights to mean what they say, the stable Service should not also select canary pods (e.g. select on a
label the canary template does not carry, or on ``track: stable``).

Verification reads the weights back and then the route's status: every ``status.parents[]`` entry (one
per Gateway the route attaches to) must report ``Accepted`` and ``ResolvedRefs`` True for the current
``metadata.generation`` (conditions carry ``observedGeneration``). A rejected route or an unresolved
backendRef (the canary Service missing, say) is ``False`` with the controller's reason; no parents at all
means no controller reports on this route, so the weight is unconfirmed (``None``).
"""

from __future__ import annotations

import copy
from typing import Any

from orchestrator.errors import KubeError, NotFoundError
from orchestrator.kube.client import retry_on_conflict
from orchestrator.kube.routers.base import Progress, RouteTarget, WeightReport, check_weight, routing_of
from orchestrator.kube.routers.route_object import RouteObjectRouter, generation, observed_behind
from orchestrator.specs.canary import GatewayApiRouting

__all__ = ["GatewayApiRouter"]

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"


def _is_service_ref(ref: Any, service: str, namespace: str, port: int | None = None) -> bool:
    return (
        isinstance(ref, dict)
        and ref.get("name") == service
        and ref.get("kind", "Service") == "Service"
        and ref.get("group", "") in ("", "core")
        and ref.get("namespace", namespace) == namespace
        and (port is None or ref.get("port") == port)
    )


def _weight(ref: dict[str, Any]) -> int:
    # The Gateway API default for an unset weight is 1.
    return int(ref.get("weight", 1))


class GatewayApiRouter(RouteObjectRouter):
    type = "gateway-api"
    group = GROUP
    version = VERSION
    plural = PLURAL
    noun = "httproute"

    def _matching_rules(
        self, route: dict[str, Any], routing: GatewayApiRouting, namespace: str
    ) -> list[dict[str, Any]]:
        rules = [r for r in (route.get("spec") or {}).get("rules") or [] if isinstance(r, dict)]
        matching = [
            r
            for r in rules
            if any(
                _is_service_ref(ref, routing.stable_service, namespace, routing.port)
                for ref in r.get("backendRefs") or []
            )
        ]
        if not matching:
            raise KubeError(
                f"httproute {namespace}/{routing.http_route} has no rule with a backendRef to service "
                f"{routing.stable_service}" + (f" port {routing.port}" if routing.port else ""),
                retryable=False,
            )
        return matching

    def _apply(self, target: RouteTarget, weight: int | None) -> None:
        """Set the weights (``weight`` None: remove the canary backendRef and give stable everything)."""
        routing = routing_of(target, GatewayApiRouting)
        ns = target.namespace

        def attempt() -> None:
            route = self._get(ns, routing.http_route)
            before = copy.deepcopy(route)
            for rule in self._matching_rules(route, routing, ns):
                refs: list[Any] = rule["backendRefs"]
                stable_refs = [r for r in refs if _is_service_ref(r, routing.stable_service, ns, routing.port)]
                canary_refs = [r for r in refs if _is_service_ref(r, routing.canary_service, ns)]
                for ref in stable_refs:
                    ref["weight"] = 100 - (weight or 0)
                if weight is None:
                    rule["backendRefs"] = [r for r in refs if not any(r is c for c in canary_refs)]
                elif canary_refs:
                    for ref in canary_refs:
                        ref["weight"] = weight
                else:
                    added = copy.deepcopy(stable_refs[0])
                    added["name"] = routing.canary_service
                    added["weight"] = weight
                    refs.insert(refs.index(stable_refs[0]) + 1, added)
            if route != before:
                self._put(ns, routing.http_route, route)

        retry_on_conflict(attempt)

    def set_weight(
        self, target: RouteTarget, weight: int, progress: Progress, replicas: int | None = None
    ) -> None:
        check_weight(weight)
        routing = routing_of(target, GatewayApiRouting)
        # The Service first: a backendRef to a missing Service makes the Gateway answer 500 for its share.
        self.workloads.ensure_service_copy(
            target.namespace, routing.stable_service, routing.canary_service, target.rollout, "canary"
        )
        self._apply(target, weight)

    def verify_weight(self, target: RouteTarget, weight: int, replicas: int | None = None) -> WeightReport:
        check_weight(weight)
        routing = routing_of(target, GatewayApiRouting)
        ns = target.namespace
        route = self._get(ns, routing.http_route)
        shares: list[float] = []
        for rule in self._matching_rules(route, routing, ns):
            refs = rule["backendRefs"]
            stable = sum(_weight(r) for r in refs if _is_service_ref(r, routing.stable_service, ns, routing.port))
            canary = sum(_weight(r) for r in refs if _is_service_ref(r, routing.canary_service, ns))
            if stable + canary == 0:
                return WeightReport(effective=0.0, verified=False, detail="a rule gives every backend weight 0")
            # Compare shares, not raw numbers: weights 1 and 3 are a correct 75/25 too.
            shares.append(100 * canary / (stable + canary))
        effective = shares[0]
        weights = f"httproute {ns}/{routing.http_route} sends {effective:.3g}% to {routing.canary_service}"
        if any(abs(share - weight) >= 0.5 for share in shares):
            return WeightReport(effective=effective, verified=False, detail=f"{weights}, not {weight}%")
        return self._confirmed(route, effective, weights)

    def status_verdict(self, obj: dict[str, Any]) -> tuple[bool | None, str]:
        parents = [p for p in (obj.get("status") or {}).get("parents") or [] if isinstance(p, dict)]
        if not parents:
            return None, "no controller reports status for this route (status.parents is empty): unconfirmed"
        current = generation(obj)
        for parent in parents:
            gateway = (parent.get("parentRef") or {}).get("name", "?")
            conditions = {c.get("type"): c for c in parent.get("conditions") or [] if isinstance(c, dict)}
            for kind in ("Accepted", "ResolvedRefs"):
                cond = conditions.get(kind)
                if cond is None:
                    return False, f"gateway {gateway} reports no {kind} condition yet"
                if observed_behind(cond.get("observedGeneration"), current):
                    return False, (
                        f"gateway {gateway} has not observed generation {current} yet "
                        f"({kind} is for {cond.get('observedGeneration')})"
                    )
                if cond.get("status") != "True":
                    return False, (
                        f"gateway {gateway}: {kind} is {cond.get('status')} "
                        f"({cond.get('reason', '')}: {cond.get('message', '')})"
                    )
        names = ", ".join(str((p.get("parentRef") or {}).get("name", "?")) for p in parents)
        return True, f"accepted with resolved refs at generation {current} by {names}"

    def observed_generations(self, obj: dict[str, Any]) -> list[Any]:
        return [
            c.get("observedGeneration")
            for p in (obj.get("status") or {}).get("parents") or [] if isinstance(p, dict)
            for c in p.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Accepted"
        ]

    def reset(self, target: RouteTarget, progress: Progress) -> None:
        routing = routing_of(target, GatewayApiRouting)
        try:
            self._apply(target, None)
        except NotFoundError:
            pass  # no route, so nothing sends traffic to the canary
        else:
            # The canary Service goes only once the gateway has stopped sending it traffic.
            self._wait_caught_up(target.namespace, routing.http_route, progress)
        self.workloads.delete_service(target.namespace, routing.canary_service, only_if_ours=True)
