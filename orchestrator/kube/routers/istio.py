"""Istio: canary weight as the weights of two destinations of one HTTP route of a VirtualService.

The route is ``spec.http[]`` named ``route`` (the first when unnamed in the spec). Its stable destination
(``stableHost``, and ``stableSubset`` when given) gets ``100 - w``, the canary destination (``canaryHost`` /
``canarySubset``) gets ``w`` and is added, copied from the stable one, when missing; ``reset`` removes it.
Every other field of the VirtualService is left as it was.

When the hosts name two different Services of the target namespace (``app`` and ``app-canary``, or their
``.ns.svc...`` forms), the canary Service is derived from the stable one as for the Gateway API router.
With subsets of one host, the user's DestinationRule defines the subsets and no Service is managed.

Verification reads the weights back, then the status Istio writes when its status reporting is on
(``PILOT_ENABLE_STATUS``): ``status.observedGeneration`` must have reached ``metadata.generation`` and the
``Reconciled`` condition, when present, must be True (every proxy has the config). Without a status the
weight is unconfirmed (``None``), and the detail says so.
"""

from __future__ import annotations

import copy
from typing import Any

from orchestrator.errors import KubeError, NotFoundError
from orchestrator.kube.client import retry_on_conflict
from orchestrator.kube.routers.base import Progress, RouteTarget, WeightReport, check_weight, routing_of
from orchestrator.kube.routers.route_object import RouteObjectRouter, generation, observed_behind
from orchestrator.specs.canary import IstioRouting

__all__ = ["IstioRouter", "service_name"]

GROUP = "networking.istio.io"
VERSION = "v1beta1"
PLURAL = "virtualservices"


def service_name(host: str, namespace: str) -> str | None:
    """The Service in ``namespace`` that ``host`` names, or None for an external or other-namespace host."""
    if "." not in host:
        return host
    parts = host.split(".")
    if len(parts) >= 3 and parts[1] == namespace and parts[2] == "svc":
        return parts[0]
    return None


def _destination_is(entry: Any, host: str, subset: str | None, *, any_subset: bool = False) -> bool:
    if not isinstance(entry, dict):
        return False
    dest = entry.get("destination") or {}
    if dest.get("host") != host:
        return False
    return any_subset or dest.get("subset") == subset


class IstioRouter(RouteObjectRouter):
    type = "istio"
    group = GROUP
    version = VERSION
    plural = PLURAL
    noun = "virtualservice"

    @staticmethod
    def _checked(target: RouteTarget) -> IstioRouting:
        routing = routing_of(target, IstioRouting)
        if (routing.stable_host, routing.stable_subset) == (routing.canary_host, routing.canary_subset):
            raise KubeError(
                "istio routing: stable and canary destinations are the same host and subset",
                retryable=False,
            )
        return routing

    def _route(self, vs: dict[str, Any], routing: IstioRouting, namespace: str) -> dict[str, Any]:
        http = [r for r in (vs.get("spec") or {}).get("http") or [] if isinstance(r, dict)]
        where = f"virtualservice {namespace}/{routing.virtual_service}"
        if routing.route is None:
            if not http:
                raise KubeError(f"{where} has no http routes", retryable=False)
            return http[0]
        for r in http:
            if r.get("name") == routing.route:
                return r
        raise KubeError(f"{where} has no http route named {routing.route!r}", retryable=False)

    def _split(self, route: dict[str, Any], routing: IstioRouting) -> tuple[list[Any], list[Any], list[Any]]:
        dests: list[Any] = route.get("route") or []
        canary = [d for d in dests if _destination_is(d, routing.canary_host, routing.canary_subset)]
        stable = [
            d
            for d in dests
            if _destination_is(d, routing.stable_host, routing.stable_subset, any_subset=routing.stable_subset is None)
            and not any(d is c for c in canary)
        ]
        return dests, stable, canary

    def _apply(self, target: RouteTarget, weight: int | None) -> None:
        routing = self._checked(target)
        ns = target.namespace

        def attempt() -> None:
            vs = self._get(ns, routing.virtual_service)
            before = copy.deepcopy(vs)
            route = self._route(vs, routing, ns)
            dests, stable, canary = self._split(route, routing)
            if not stable:
                raise KubeError(
                    f"virtualservice {ns}/{routing.virtual_service}: the route has no destination "
                    f"{routing.stable_host}" + (f" subset {routing.stable_subset}" if routing.stable_subset else ""),
                    retryable=False,
                )
            for d in stable:
                d["weight"] = 100 - (weight or 0)
            if weight is None:
                route["route"] = [d for d in dests if not any(d is c for c in canary)]
            elif canary:
                for d in canary:
                    d["weight"] = weight
            else:
                added = copy.deepcopy(stable[0])
                added["destination"]["host"] = routing.canary_host
                if routing.canary_subset is None:
                    added["destination"].pop("subset", None)
                else:
                    added["destination"]["subset"] = routing.canary_subset
                added["weight"] = weight
                dests.insert(dests.index(stable[0]) + 1, added)
            if vs != before:
                self._put(ns, routing.virtual_service, vs)

        retry_on_conflict(attempt)

    def _services(self, target: RouteTarget, routing: IstioRouting) -> tuple[str, str] | None:
        stable = service_name(routing.stable_host, target.namespace)
        canary = service_name(routing.canary_host, target.namespace)
        if stable is None or canary is None or stable == canary:
            return None
        return stable, canary

    def set_weight(
        self, target: RouteTarget, weight: int, progress: Progress, replicas: int | None = None
    ) -> None:
        check_weight(weight)
        routing = self._checked(target)
        services = self._services(target, routing)
        if services is not None:
            self.workloads.ensure_service_copy(target.namespace, services[0], services[1], target.rollout, "canary")
        self._apply(target, weight)

    def verify_weight(self, target: RouteTarget, weight: int, replicas: int | None = None) -> WeightReport:
        check_weight(weight)
        routing = self._checked(target)
        vs = self._get(target.namespace, routing.virtual_service)
        dests, stable, canary = self._split(self._route(vs, routing, target.namespace), routing)
        # Istio's default weight is 100 for a lone destination; with several, unset means 0.
        default = 100 if len(dests) == 1 else 0
        s = sum(int(d.get("weight", default)) for d in stable)
        c = sum(int(d.get("weight", default)) for d in canary)
        if s + c == 0:
            return WeightReport(effective=0.0, verified=False, detail="every destination has weight 0")
        effective = 100 * c / (s + c)
        weights = f"virtualservice {target.namespace}/{routing.virtual_service} sends {effective:.3g}% to the canary"
        if abs(effective - weight) >= 0.5:
            return WeightReport(effective=effective, verified=False, detail=f"{weights}, not {weight}%")
        return self._confirmed(vs, effective, weights)

    def observed_generations(self, obj: dict[str, Any]) -> list[Any]:
        observed = (obj.get("status") or {}).get("observedGeneration")
        return [] if observed is None else [observed]

    def status_verdict(self, obj: dict[str, Any]) -> tuple[bool | None, str]:
        status = obj.get("status") or {}
        current = generation(obj)
        observed = status.get("observedGeneration")
        if observed is None and not status.get("conditions"):
            return None, "istio reports no status for this virtualservice (status reporting off): unconfirmed"
        if observed is None or observed_behind(observed, current):
            return False, f"istio has not observed generation {current} yet (at {observed})"
        for cond in status.get("conditions") or []:
            if isinstance(cond, dict) and cond.get("type") == "Reconciled" and cond.get("status") != "True":
                return False, f"not reconciled to every proxy yet ({cond.get('reason', '')}: {cond.get('message', '')})"
        return True, f"observed at generation {current}"

    def reset(self, target: RouteTarget, progress: Progress) -> None:
        routing = self._checked(target)
        try:
            self._apply(target, None)
        except NotFoundError:
            pass  # no VirtualService, so nothing sends traffic to the canary
        else:
            self._wait_caught_up(target.namespace, routing.virtual_service, progress)
        services = self._services(target, routing)
        if services is not None:
            self.workloads.delete_service(target.namespace, services[1], only_if_ours=True)
