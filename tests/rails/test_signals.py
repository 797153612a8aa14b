"""Incidents and declared health queries against a real Prometheus with backfilled ALERTS and burn rates."""

from __future__ import annotations

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.errors import UnreachableError
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.rails.models import RailStatus, RailTarget
from orchestrator.rails.signals import health, incidents
from tests.fixtures_temporal import free_port
from tests.rails.conftest import policy

pytestmark = pytest.mark.timeout(60)

BY_APP = policy(incidents={"matchLabels": {"severity": "critical", "app": "{{app}}"}}).spec
CHECKOUT = RailTarget(namespace="shop", workloads=["checkout"], app="checkout")
CART = RailTarget(namespace="shop", workloads=["cart"], app="cart")


def test_a_firing_critical_alert_on_the_target_refuses_naming_it(metrics: PrometheusProvider) -> None:
    verdict = incidents(metrics, BY_APP, "canary", CHECKOUT)
    assert verdict.status is RailStatus.REFUSED
    assert "CheckoutDown" in verdict.reason and "1 alert(s)" in verdict.reason


def test_a_warning_or_another_apps_alert_is_no_incident(metrics: PrometheusProvider) -> None:
    verdict = incidents(metrics, BY_APP, "chaos", CART)
    assert verdict.status is RailStatus.OK, verdict.reason
    assert 'app="cart"' in verdict.reason


def test_incidents_off_when_the_policy_declares_no_labels(metrics: PrometheusProvider) -> None:
    assert incidents(metrics, policy(incidents={"matchLabels": {}}).spec, "canary", CHECKOUT).status \
        is RailStatus.SKIPPED


def test_health_query_above_its_bound_refuses_with_the_value(metrics: PrometheusProvider) -> None:
    p = policy(health=[{"name": "burn", "query": 'slo:burn_rate1h{app="{{app}}"}', "max": 1}]).spec
    verdict = health(metrics, p, "canary", CHECKOUT)
    assert verdict.status is RailStatus.REFUSED
    assert "burn = 3.2" in verdict.reason and "<= 1" in verdict.reason
    ok = health(metrics, p, "canary", CART)
    assert ok.status is RailStatus.OK and "burn = 0.4" in ok.reason


def test_a_dependency_health_query_declared_for_the_target_refuses(metrics: PrometheusProvider) -> None:
    p = policy(health=[{"name": "payments-burn", "query": 'slo:burn_rate1h{app="payments"}', "max": 1,
                        "appliesTo": [{"namespace": "shop", "app": "cart"}]}]).spec
    refused = health(metrics, p, "flag", CART)
    assert refused.status is RailStatus.REFUSED and "payments-burn = 6" in refused.reason
    # Declared for cart only: checkout is not concerned.
    assert health(metrics, p, "flag", CHECKOUT).status is RailStatus.SKIPPED


def test_health_query_without_data_refuses_unless_nodata_pass(metrics: PrometheusProvider) -> None:
    query = 'slo:burn_rate1h{app="nobody"}'
    refused = health(metrics, policy(health=[{"name": "gone", "query": query, "max": 1}]).spec, "chaos", CART)
    assert refused.status is RailStatus.REFUSED and "no data" in refused.reason
    passed = health(metrics, policy(health=[{"name": "gone", "query": query, "max": 1, "noData": "pass"}]).spec,
                    "chaos", CART)
    assert passed.status is RailStatus.OK


def test_unreachable_prometheus_is_an_error_never_a_pass() -> None:
    down = PrometheusProvider(PrometheusSettings(url=f"http://127.0.0.1:{free_port()}", timeout_seconds=1))
    with pytest.raises(UnreachableError):
        incidents(down, BY_APP, "canary", CHECKOUT)


def test_a_health_query_the_target_cannot_fill_is_not_applicable(metrics: PrometheusProvider) -> None:
    by_app = {"name": "burn", "query": 'slo:burn_rate1h{app="{{app}}"}', "max": 1}
    cart = {"name": "cart", "query": 'slo:burn_rate1h{app="cart"}', "max": 1}
    ramp = RailTarget(namespace="shop", flag="f")  # a flag ramp that names no app
    verdict = health(metrics, policy(health=[by_app, cart]).spec, "flag", ramp)
    assert verdict.status is RailStatus.OK, verdict.reason
    assert "burn: not applicable (flag f has no app)" in verdict.reason and "cart = 0.4" in verdict.reason
    alone = health(metrics, policy(health=[by_app]).spec, "flag", ramp)
    assert alone.status is RailStatus.SKIPPED and "burn: not applicable" in alone.reason
