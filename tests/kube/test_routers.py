"""Each traffic router's object changes for weights 0, 25, 100 and reset, against the sandbox API server."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from kubernetes import client as k8s

from orchestrator.errors import KubeError
from orchestrator.kube import labels
from orchestrator.kube.routers import ROUTERS, RouteTarget, replica_split, router_for
from orchestrator.kube.routers.base import PodsNotReadyError, Progress
from orchestrator.kube.routers.gateway_api import GatewayApiRouter
from orchestrator.kube.routers.istio import IstioRouter, service_name
from orchestrator.kube.routers.replicas import ReplicasRouter
from orchestrator.kube.workloads import Workloads
from orchestrator.specs.canary import GatewayApiRouting, IstioRouting, ReplicasRouting
from tests.fixtures_kube import deployment_manifest

pytestmark = pytest.mark.timeout(30)

FAST = Progress(deadline_seconds=10, poll_seconds=0.05)


def _deploy_stable_and_canary(kube: Any, replicas: int = 4) -> None:
    apps = k8s.AppsV1Api(kube.api_client)
    apps.create_namespaced_deployment(kube.namespace, deployment_manifest("app", replicas=replicas))
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 0, image="demo:v2")


def _stable_service(kube: Any) -> None:
    k8s.CoreV1Api(kube.api_client).create_namespaced_service(
        kube.namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "app", "labels": {"app": "app"}},
            "spec": {"selector": {"app": "app"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )


def _replicas(kube: Any, name: str) -> int:
    return int(k8s.AppsV1Api(kube.api_client).read_namespaced_deployment(name, kube.namespace).spec.replicas)


# -- replicas ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (4, 0, (4, 0)),
        (4, 25, (3, 1)),
        (4, 50, (2, 2)),
        (4, 100, (1, 4)),
        (3, 50, (1, 2)),
        (10, 1, (9, 1)),
        (1, 50, (1, 1)),
        (3, 10, (2, 1)),
    ],
)
def test_replica_split(total: int, weight: int, expected: tuple[int, int]) -> None:
    assert replica_split(total, weight) == expected


def test_replica_split_rejects_bad_weights() -> None:
    with pytest.raises(ValueError):
        replica_split(3, 101)


def test_replicas_router_weights_and_reset(kube: Any) -> None:
    _deploy_stable_and_canary(kube, replicas=4)
    target = RouteTarget(
        namespace=kube.namespace,
        rollout="r1",
        stable="app",
        canary="app-canary",
        total_replicas=4,
        routing=ReplicasRouting(),
    )
    router = router_for(target.routing, kube.api_client)
    assert isinstance(router, ReplicasRouter)

    for weight, (stable, canary) in ((25, (3, 1)), (0, (4, 0)), (100, (1, 4)), (25, (3, 1))):
        router.set_weight(target, weight, FAST)
        assert (_replicas(kube, "app"), _replicas(kube, "app-canary")) == (stable, canary), weight
        router.set_weight(target, weight, FAST)  # idempotent
        assert (_replicas(kube, "app"), _replicas(kube, "app-canary")) == (stable, canary), weight
    assert router.verify_weight(target, 0).verified is False

    router.reset(target, FAST)
    assert (_replicas(kube, "app"), _replicas(kube, "app-canary")) == (4, 0)
    # Reset without a canary Deployment (already deleted) is still fine.
    Workloads(kube.api_client).delete(kube.namespace, "app-canary")
    router.reset(target, FAST)
    assert _replicas(kube, "app") == 4


def test_replicas_router_verify_follows_ready_pods(kube: Any) -> None:
    import time

    _deploy_stable_and_canary(kube, replicas=4)
    target = RouteTarget(
        namespace=kube.namespace,
        rollout="r1",
        stable="app",
        canary="app-canary",
        total_replicas=4,
        routing=ReplicasRouting(),
    )
    router = ReplicasRouter(kube.api_client)
    router.set_weight(target, 25, FAST)
    deadline = time.monotonic() + 10
    while not router.verify_weight(target, 25).verified and time.monotonic() < deadline:
        kube.settle(1)
    assert router.verify_weight(target, 25).verified is True
    assert router.verify_weight(target, 50).verified is False


# -- Gateway API -------------------------------------------------------------------------------------------

GW = ("gateway.networking.k8s.io", "v1")


def _http_route(kube: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "app-route", "labels": {"team": "web"}},
        "spec": {
            "parentRefs": [{"name": "public-gw", "sectionName": "https"}],
            "hostnames": ["app.example.com"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/admin"}}],
                    "backendRefs": [{"name": "admin", "port": 80}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"add": [{"name": "x", "value": "1"}]},
                        }
                    ],
                    "backendRefs": [{"name": "app", "port": 80}],
                    "timeouts": {"request": "10s"},
                },
            ],
        },
    }
    k8s.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(*GW, kube.namespace, "httproutes", body)
    return body


def _get_route(kube: Any) -> dict[str, Any]:
    return dict(
        k8s.CustomObjectsApi(kube.api_client).get_namespaced_custom_object(
            *GW, kube.namespace, "httproutes", "app-route"
        )
    )


def _gw_target(kube: Any, port: int | None = None) -> RouteTarget:
    return RouteTarget(
        namespace=kube.namespace,
        rollout="r1",
        stable="app",
        canary="app-canary",
        total_replicas=4,
        routing=GatewayApiRouting(
            type="gateway-api", http_route="app-route", stable_service="app", canary_service="app-canary", port=port
        ),
    )


def test_gateway_api_router_weights_and_reset(kube: Any) -> None:
    _stable_service(kube)
    original = _http_route(kube)
    target = _gw_target(kube)
    router = router_for(target.routing, kube.api_client)
    assert isinstance(router, GatewayApiRouter)
    core = k8s.CoreV1Api(kube.api_client)

    for weight in (0, 25, 100):
        router.set_weight(target, weight, FAST)
        route = _get_route(kube)
        rules = route["spec"]["rules"]
        assert rules[1]["backendRefs"] == [
            {"name": "app", "port": 80, "weight": 100 - weight},
            {"name": "app-canary", "port": 80, "weight": weight},
        ]
        # Every other field is untouched.
        assert rules[0] == original["spec"]["rules"][0]
        for key in ("matches", "filters", "timeouts"):
            assert rules[1][key] == original["spec"]["rules"][1][key]
        assert route["spec"]["parentRefs"] == original["spec"]["parentRefs"]
        assert route["spec"]["hostnames"] == original["spec"]["hostnames"]
        assert route["metadata"]["labels"] == {"team": "web"}
        assert router.verify_weight(target, weight).verified is None  # weights right; no controller reports
        assert router.verify_weight(target, (weight + 50) % 100).verified is False

    rv = _get_route(kube)["metadata"]["resourceVersion"]
    router.set_weight(target, 100, FAST)
    assert _get_route(kube)["metadata"]["resourceVersion"] == rv, "same weight, no write"

    svc = core.read_namespaced_service("app-canary", kube.namespace)
    assert svc.spec.selector == {"app": "app", labels.ROLE: "canary"}
    assert [(p.name, p.port, p.target_port) for p in svc.spec.ports] == [("http", 80, 8080)]
    assert svc.metadata.labels[labels.MANAGED_BY] == "orchestrator"

    router.reset(target, FAST)
    route = _get_route(kube)
    assert route["spec"]["rules"][1]["backendRefs"] == [{"name": "app", "port": 80, "weight": 100}]
    assert route["spec"]["rules"][0] == original["spec"]["rules"][0]
    assert [s.metadata.name for s in core.list_namespaced_service(kube.namespace).items] == ["app"]
    assert router.verify_weight(target, 0).verified is None
    router.reset(target, FAST)  # idempotent


def test_gateway_api_router_keeps_a_user_canary_service(kube: Any) -> None:
    _stable_service(kube)
    _http_route(kube)
    core = k8s.CoreV1Api(kube.api_client)
    core.create_namespaced_service(
        kube.namespace,
        {"metadata": {"name": "app-canary"}, "spec": {"selector": {"app": "mine"}, "ports": [{"port": 80}]}},
    )
    router = GatewayApiRouter(kube.api_client)
    target = _gw_target(kube)
    router.set_weight(target, 25, FAST)
    router.reset(target, FAST)
    svc = core.read_namespaced_service("app-canary", kube.namespace)
    assert svc.spec.selector == {"app": "mine"}


def test_gateway_api_router_without_a_matching_rule_is_refused(kube: Any) -> None:
    _stable_service(kube)
    _http_route(kube)
    router = GatewayApiRouter(kube.api_client)
    with pytest.raises(KubeError, match="no rule") as err:
        router.set_weight(_gw_target(kube, port=9999), 25, FAST)
    assert not err.value.retryable


# -- Istio -------------------------------------------------------------------------------------------------

IST = ("networking.istio.io", "v1beta1")


def _virtual_service(kube: Any) -> dict[str, Any]:
    body = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "app-vs"},
        "spec": {
            "hosts": ["app.example.com"],
            "gateways": ["public"],
            "http": [
                {
                    "name": "health",
                    "match": [{"uri": {"exact": "/healthz"}}],
                    "route": [{"destination": {"host": "app", "subset": "stable"}}],
                },
                {
                    "name": "primary",
                    "retries": {"attempts": 3},
                    "route": [{"destination": {"host": "app", "subset": "stable", "port": {"number": 80}}}],
                },
            ],
        },
    }
    k8s.CustomObjectsApi(kube.api_client).create_namespaced_custom_object(*IST, kube.namespace, "virtualservices", body)
    return body


def _get_vs(kube: Any) -> dict[str, Any]:
    return dict(
        k8s.CustomObjectsApi(kube.api_client).get_namespaced_custom_object(
            *IST, kube.namespace, "virtualservices", "app-vs"
        )
    )


def test_istio_router_weights_and_reset_with_subsets(kube: Any) -> None:
    original = _virtual_service(kube)
    target = RouteTarget(
        namespace=kube.namespace,
        rollout="r1",
        stable="app",
        canary="app-canary",
        total_replicas=4,
        routing=IstioRouting(
            type="istio",
            virtual_service="app-vs",
            route="primary",
            stable_host="app",
            canary_host="app",
            stable_subset="stable",
            canary_subset="canary",
        ),
    )
    router = router_for(target.routing, kube.api_client)
    assert isinstance(router, IstioRouter)

    for weight in (0, 25, 100):
        router.set_weight(target, weight, FAST)
        vs = _get_vs(kube)
        http = vs["spec"]["http"]
        assert http[1]["route"] == [
            {"destination": {"host": "app", "subset": "stable", "port": {"number": 80}}, "weight": 100 - weight},
            {"destination": {"host": "app", "subset": "canary", "port": {"number": 80}}, "weight": weight},
        ]
        assert http[0] == original["spec"]["http"][0], "only the named route changes"
        assert http[1]["retries"] == {"attempts": 3}
        assert vs["spec"]["hosts"] == original["spec"]["hosts"]
        assert router.verify_weight(target, weight).verified is None  # weights right; no controller reports
        assert router.verify_weight(target, (weight + 50) % 100).verified is False

    router.reset(target, FAST)
    http = _get_vs(kube)["spec"]["http"]
    assert http[1]["route"] == [
        {"destination": {"host": "app", "subset": "stable", "port": {"number": 80}}, "weight": 100}
    ]
    # Subsets of one host: no Service is created or deleted.
    assert k8s.CoreV1Api(kube.api_client).list_namespaced_service(kube.namespace).items == []


def test_istio_router_first_route_and_separate_hosts(kube: Any) -> None:
    _stable_service(kube)
    vs = _virtual_service(kube)
    target = RouteTarget(
        namespace=kube.namespace,
        rollout="r1",
        stable="app",
        canary="app-canary",
        total_replicas=4,
        routing=IstioRouting(
            type="istio",
            virtual_service="app-vs",
            stable_host="app",
            canary_host="app-canary",
        ),
    )
    router = IstioRouter(kube.api_client)
    router.set_weight(target, 25, FAST)
    http = _get_vs(kube)["spec"]["http"]
    assert http[0]["route"] == [
        {"destination": {"host": "app", "subset": "stable"}, "weight": 75},
        {"destination": {"host": "app-canary"}, "weight": 25},
    ]
    assert http[1] == vs["spec"]["http"][1]
    core = k8s.CoreV1Api(kube.api_client)
    assert core.read_namespaced_service("app-canary", kube.namespace).spec.selector[labels.ROLE] == "canary"
    router.reset(target, FAST)
    assert _get_vs(kube)["spec"]["http"][0]["route"] == [
        {"destination": {"host": "app", "subset": "stable"}, "weight": 100}
    ]
    assert [s.metadata.name for s in core.list_namespaced_service(kube.namespace).items] == ["app"]


def test_istio_service_names() -> None:
    assert service_name("app", "ns") == "app"
    assert service_name("app.ns.svc.cluster.local", "ns") == "app"
    assert service_name("app.other.svc.cluster.local", "ns") is None
    assert service_name("api.example.com", "ns") is None


# -- registry ----------------------------------------------------------------------------------------------


def test_registry_covers_every_routing_type(kube: Any) -> None:
    assert set(ROUTERS) == {"replicas", "gateway-api", "istio"}
    for name, factory in ROUTERS.items():
        assert factory(kube.api_client).type == name


def test_route_target_survives_json() -> None:
    target = RouteTarget(
        namespace="ns",
        rollout="r1",
        stable="app",
        canary="app-canary",
        total_replicas=3,
        routing=GatewayApiRouting(type="gateway-api", http_route="r", stable_service="a", canary_service="b"),
    )
    assert RouteTarget.model_validate_json(target.model_dump_json(by_alias=True)) == target
    assert RouteTarget.model_validate_json(target.model_dump_json()) == target
    assert copy.deepcopy(target) == target


# -- effective weight (replicas) ---------------------------------------------------------------------------


def _route_request(kube: Any, weight: int, replicas: int | None = None, total: int = 4) -> Any:
    from orchestrator.api.requests import RouteRequest

    return RouteRequest(
        namespace=kube.namespace, rollout="r1", stable="app", canary="app-canary", total_replicas=total,
        routing=ReplicasRouting(), weight=weight, replicas=replicas, verify_seconds=10,
    )


@pytest.mark.parametrize(
    ("weight", "replicas", "effective", "pods"),
    [(5, None, 25.0, (3, 1)), (20, None, 25.0, (3, 1)), (100, None, 80.0, (1, 4)), (0, 2, 50.0, (2, 2))],
)
def test_set_weight_reports_the_effective_weight(
    kube: Any, weight: int, replicas: int | None, effective: float, pods: tuple[int, int]
) -> None:
    from temporalio.testing import ActivityEnvironment

    from orchestrator.activities.canary import CanaryActivities
    from orchestrator.api.requests import WeightResult
    from orchestrator.config import Settings

    _deploy_stable_and_canary(kube, replicas=4)
    activities = CanaryActivities(Settings(), api_client=kube.api_client)
    beats: list[Any] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: beats.append(details)
    result = env.run(activities.set_weight, _route_request(kube, weight, replicas))
    assert isinstance(result, WeightResult)
    assert result.effective == pytest.approx(effective)
    assert result.verified is True
    assert result.requested == (weight if replicas is None else round(effective))
    assert f"{pods[1]} canary and {pods[0]} stable pods ready" in result.detail
    assert (_replicas(kube, "app"), _replicas(kube, "app-canary")) == pods
    assert beats, "the activity heartbeats while it waits"

    back = env.run(activities.reset_traffic, _route_request(kube, 0))
    assert (back.requested, back.effective, back.verified) == (0, 0.0, True)
    assert (_replicas(kube, "app"), _replicas(kube, "app-canary")) == (4, 0)


def test_pods_that_never_get_ready_fail_the_step_and_keep_the_stable(kube: Any) -> None:
    apps = k8s.AppsV1Api(kube.api_client)
    apps.create_namespaced_deployment(kube.namespace, deployment_manifest("app", replicas=4))
    w = Workloads(kube.api_client)
    snap = w.snapshot(kube.namespace, "app")
    w.ensure_copy(kube.namespace, snap, "app-canary", "canary", "r1", 0, image="demo:v2")
    # No node has this label: the canary's pods stay Pending, as an unschedulable pod does on a real cluster.
    apps.patch_namespaced_deployment(
        "app-canary", kube.namespace, {"spec": {"template": {"spec": {"nodeSelector": {"pool": "nowhere"}}}}}
    )
    target = RouteTarget(
        namespace=kube.namespace, rollout="r1", stable="app", canary="app-canary", total_replicas=4,
        routing=ReplicasRouting(),
    )
    router = ReplicasRouter(kube.api_client)
    beats: list[str] = []
    with pytest.raises(PodsNotReadyError, match="app-canary at 1 ready replicas") as err:
        router.set_weight(target, 25, Progress(deadline_seconds=1.5, beat=beats.append, poll_seconds=0.1))
    assert err.value.retryable is False
    assert _replicas(kube, "app") == 4, "the stable keeps every pod when the canary never gets ready"
    assert any("0 of 1 pods of app-canary available" in b for b in beats)


# -- route status (Gateway API, Istio) ---------------------------------------------------------------------


def _set_route_status(kube: Any, status: dict[str, Any]) -> None:
    k8s.CustomObjectsApi(kube.api_client).patch_namespaced_custom_object_status(
        *GW, kube.namespace, "httproutes", "app-route", {"status": status}
    )


def _parent(generation: int, accepted: str = "True", resolved: str = "True", reason: str = "") -> dict[str, Any]:
    return {
        "parentRef": {"name": "public-gw"},
        "controllerName": "example.com/gateway",
        "conditions": [
            {"type": "Accepted", "status": accepted, "observedGeneration": generation, "reason": reason or "Accepted",
             "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "ResolvedRefs", "status": resolved, "observedGeneration": generation,
             "reason": reason or "ResolvedRefs", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        ],
    }


def test_gateway_api_verify_reads_the_controllers_status(kube: Any) -> None:
    _stable_service(kube)
    _http_route(kube)
    target = _gw_target(kube)
    router = GatewayApiRouter(kube.api_client)
    before = int(_get_route(kube)["metadata"]["generation"])
    router.set_weight(target, 25, FAST)
    generation = int(_get_route(kube)["metadata"]["generation"])
    assert generation == before + 1, "a spec change moves metadata.generation"

    report = router.verify_weight(target, 25)
    assert report.verified is None and report.effective == pytest.approx(25)
    assert "no controller reports status" in report.detail

    _set_route_status(kube, {"parents": [_parent(generation - 1)]})
    report = router.verify_weight(target, 25)
    assert report.verified is False and f"not observed generation {generation}" in report.detail

    _set_route_status(kube, {"parents": [_parent(generation, resolved="False", reason="BackendNotFound")]})
    report = router.verify_weight(target, 25)
    assert report.verified is False and "ResolvedRefs is False (BackendNotFound" in report.detail

    _set_route_status(kube, {"parents": [_parent(generation)]})
    report = router.verify_weight(target, 25)
    assert report.verified is True and "accepted with resolved refs" in report.detail
    assert router.verify_weight(target, 50).verified is False, "the weights still decide first"


def test_gateway_api_reset_keeps_the_canary_service_until_the_gateway_caught_up(kube: Any) -> None:
    _stable_service(kube)
    _http_route(kube)
    target = _gw_target(kube)
    router = GatewayApiRouter(kube.api_client)
    router.set_weight(target, 25, FAST)
    generation = int(_get_route(kube)["metadata"]["generation"])
    _set_route_status(kube, {"parents": [_parent(generation)]})
    core = k8s.CoreV1Api(kube.api_client)

    with pytest.raises(PodsNotReadyError, match="observed by its controller"):
        router.reset(target, Progress(deadline_seconds=0.5, poll_seconds=0.1))
    assert "app-canary" in [s.metadata.name for s in core.list_namespaced_service(kube.namespace).items]

    _set_route_status(kube, {"parents": [_parent(generation + 1)]})
    router.reset(target, FAST)
    assert [s.metadata.name for s in core.list_namespaced_service(kube.namespace).items] == ["app"]


def test_istio_verify_reads_observed_generation_and_reconciled(kube: Any) -> None:
    _virtual_service(kube)
    target = RouteTarget(
        namespace=kube.namespace, rollout="r1", stable="app", canary="app-canary", total_replicas=4,
        routing=IstioRouting(type="istio", virtual_service="app-vs", route="primary", stable_host="app",
                             canary_host="app", stable_subset="stable", canary_subset="canary"),
    )
    router = IstioRouter(kube.api_client)
    router.set_weight(target, 25, FAST)
    assert router.verify_weight(target, 25).verified is None
    generation = int(_get_vs(kube)["metadata"]["generation"])

    def status(observed: int, reconciled: str) -> None:
        k8s.CustomObjectsApi(kube.api_client).patch_namespaced_custom_object_status(
            *IST, kube.namespace, "virtualservices", "app-vs",
            {"status": {"observedGeneration": observed, "conditions": [{"type": "Reconciled", "status": reconciled}]}},
        )

    status(generation - 1, "True")
    assert router.verify_weight(target, 25).verified is False
    status(generation, "False")
    assert "not reconciled" in router.verify_weight(target, 25).detail
    status(generation, "True")
    report = router.verify_weight(target, 25)
    assert report.verified is True and report.effective == pytest.approx(25)


def test_sandbox_gateway_controller_confirms_routes_on_its_gateways(kube: Any) -> None:
    # A route attached to a Gateway of class "sandbox" gets status from the sandbox's gateway controller.
    _stable_service(kube)
    kube.custom.create_namespaced_custom_object(*GW, kube.namespace, "gateways", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "public-gw"},
        "spec": {"gatewayClassName": "sandbox", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
    })
    _http_route(kube)
    kube.core.create_namespaced_service(kube.namespace, {  # the route's other rule needs its backend too
        "metadata": {"name": "admin"}, "spec": {"selector": {"app": "admin"}, "ports": [{"port": 80}]},
    })
    target = _gw_target(kube)
    router = GatewayApiRouter(kube.api_client)
    router.set_weight(target, 25, FAST)

    def report_when(done: Any) -> Any:
        deadline = time.monotonic() + 10
        while True:
            report = router.verify_weight(target, 25)
            if done(report) or time.monotonic() > deadline:
                return report
            time.sleep(0.1)

    report = report_when(lambda r: r.verified is True)
    assert report.verified is True, report.detail
    assert "accepted with resolved refs" in report.detail and report.effective == pytest.approx(25)

    k8s.CoreV1Api(kube.api_client).delete_namespaced_service("app-canary", kube.namespace)
    report = report_when(lambda r: r.verified is False)
    assert report.verified is False and "BackendNotFound" in report.detail and "app-canary" in report.detail

    router.set_weight(target, 25, FAST)  # recreates the canary Service
    assert report_when(lambda r: r.verified is True).verified is True
    router.reset(target, FAST)  # waits for the controller to observe the reset, then removes the Service
    assert sorted(s.metadata.name for s in kube.core.list_namespaced_service(kube.namespace).items) == ["admin", "app"]
