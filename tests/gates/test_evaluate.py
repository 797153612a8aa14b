"""evaluate() against a real Prometheus holding the backfilled scenarios (queried at their time)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.errors import MetricError, UnreachableError
from orchestrator.gates import Measurement, Phase, PrometheusProvider, Side, evaluate, evaluate_sides
from orchestrator.specs.checks import Check
from tests.fixtures_prom import ERROR_RATIO_QUERY, MEAN_LATENCY_QUERY, PromData, PromProxy
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(30)


def check(condition: dict[str, Any], query: str = ERROR_RATIO_QUERY, **overrides: Any) -> Check:
    return Check.model_validate({"name": "error-rate", "query": query, "condition": condition, **overrides})


def measure(prom: PromData, app: str, c: Check, url: str | None = None, **variables: str) -> Measurement:
    provider = PrometheusProvider(PrometheusSettings(url=url or prom.url))
    return evaluate(c, provider, prom.scenarios[app].variables(**variables), at=prom.at)


# -- threshold ------------------------------------------------------------------------------


def test_threshold_passes_for_a_healthy_canary(prom_backfilled: PromData) -> None:
    m = measure(prom_backfilled, "healthy", check({"max": 0.02}))
    assert m.phase is Phase.SUCCESSFUL
    assert m.value == pytest.approx(0.005)
    assert 'track="canary"' in m.query and 'namespace="prod"' in m.query and 'app="healthy"' in m.query
    assert "{{" not in m.query
    assert m.at == prom_backfilled.at


def test_threshold_fails_for_a_broken_canary(prom_backfilled: PromData) -> None:
    m = measure(prom_backfilled, "broken", check({"max": 0.02}))
    assert m.phase is Phase.FAILED
    assert m.value == pytest.approx(0.10)
    assert m.message == "0.1 > max 0.02"
    assert [s.value for s in m.values] == [pytest.approx(0.10)]


def test_threshold_min_bound(prom_backfilled: PromData) -> None:
    rps = 'sum(rate(http_requests_total{namespace="{{namespace}}",app="{{app}}",track="{{track}}"}[30s]))'
    assert measure(prom_backfilled, "healthy", check({"min": 10}, rps)).phase is Phase.SUCCESSFUL
    assert measure(prom_backfilled, "healthy", check({"min": 30}, rps)).phase is Phase.FAILED


def test_check_track_selects_the_series(prom_backfilled: PromData) -> None:
    # The broken app's stable track is healthy: only the track in the check is judged.
    m = measure(prom_backfilled, "broken", check({"max": 0.02}, track="stable"))
    assert m.phase is Phase.SUCCESSFUL
    assert 'track!~"canary|baseline"' in m.query


def test_every_series_must_hold_and_the_worst_is_named(prom_backfilled: PromData) -> None:
    by_pod = (
        'sum by (pod) (rate(http_requests_total{namespace="{{namespace}}",app="{{app}}",track="{{track}}",'
        'code=~"5.."}[30s])) / sum by (pod) (rate(http_requests_total{namespace="{{namespace}}",'
        'app="{{app}}",track="{{track}}"}[30s]))'
    )
    m = measure(prom_backfilled, "sharded", check({"max": 0.02}, by_pod))
    assert m.phase is Phase.FAILED
    assert m.value == pytest.approx(0.10)
    assert 'pod="b"' in m.message
    assert sorted(s.labels["pod"] for s in m.values) == ["a", "b"]
    assert measure(prom_backfilled, "sharded", check({"max": 0.2}, by_pod)).phase is Phase.SUCCESSFUL


# -- relative -------------------------------------------------------------------------------


def test_relative_ratio_against_stable(prom_backfilled: PromData) -> None:
    c = check({"compareTo": "stable", "maxRatio": 2})
    broken = measure(prom_backfilled, "broken", c)
    assert broken.phase is Phase.FAILED
    assert broken.value == pytest.approx(0.10)
    assert broken.control_value == pytest.approx(0.005)
    assert broken.control_query is not None and 'track!~"canary|baseline"' in broken.control_query
    assert 'track="canary"' in broken.query
    assert "ratio 20 > maxRatio 2" in broken.message
    assert measure(prom_backfilled, "healthy", c).phase is Phase.SUCCESSFUL


def test_relative_latency_against_baseline_and_stable(prom_backfilled: PromData) -> None:
    assert (
        measure(prom_backfilled, "healthy", check({"compareTo": "baseline", "maxRatio": 1.2}, MEAN_LATENCY_QUERY)).phase
        is Phase.SUCCESSFUL
    )
    slow = measure(prom_backfilled, "slow", check({"compareTo": "stable", "maxRatio": 1.5}, MEAN_LATENCY_QUERY))
    assert slow.phase is Phase.FAILED
    assert slow.value == pytest.approx(0.2) and slow.control_value == pytest.approx(0.1)


def test_relative_difference(prom_backfilled: PromData) -> None:
    assert measure(prom_backfilled, "broken", check({"compareTo": "stable", "maxDifference": 0.01})).phase is (
        Phase.FAILED
    )
    assert measure(prom_backfilled, "broken", check({"compareTo": "stable", "maxDifference": 0.1})).phase is (
        Phase.SUCCESSFUL
    )


def test_relative_needs_one_series_per_track(prom_backfilled: PromData) -> None:
    by_pod = 'sum by (pod) (rate(http_requests_total{namespace="{{namespace}}",app="{{app}}",{{track_selector}}}[30s]))'
    m = measure(prom_backfilled, "sharded", check({"compareTo": "stable", "maxRatio": 2}, by_pod))
    assert m.phase is Phase.ERROR
    assert "one series" in m.message


# -- no data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(None, Phase.FAILED), ("fail", Phase.FAILED), ("pass", Phase.SUCCESSFUL), ("inconclusive", Phase.INCONCLUSIVE)],
)
def test_missing_series_follow_the_no_data_policy(
    prom_backfilled: PromData, policy: str | None, expected: Phase
) -> None:
    extra = {"noData": policy} if policy else {}
    m = measure(prom_backfilled, "nodata", check({"max": 0.02}, **extra))
    assert m.phase is expected
    assert m.values == [] and m.value is None
    assert m.message.startswith("no data")


@pytest.mark.parametrize(("policy", "expected"), [("fail", Phase.FAILED), ("inconclusive", Phase.INCONCLUSIVE)])
def test_nan_from_zero_over_zero_is_no_data(prom_backfilled: PromData, policy: str, expected: Phase) -> None:
    m = measure(prom_backfilled, "idle", check({"max": 0.02}, noData=policy))
    assert m.phase is expected
    assert len(m.values) == 1 and math.isnan(m.values[0].value)
    assert "NaN" in m.message


def test_missing_control_is_no_data_even_when_the_canary_is_fine(prom_backfilled: PromData) -> None:
    m = measure(prom_backfilled, "nodata", check({"compareTo": "baseline", "maxRatio": 2}, track="stable"))
    assert m.phase is Phase.FAILED
    assert m.value == pytest.approx(0.005) and m.control_value is None
    assert "control" in m.message


def test_missing_canary_in_a_relative_check_is_no_data(prom_backfilled: PromData) -> None:
    m = measure(prom_backfilled, "nodata", check({"compareTo": "stable", "maxRatio": 2}, noData="pass"))
    assert m.phase is Phase.SUCCESSFUL
    assert m.message.startswith("no data") and "noData: pass" in m.message


# -- errors ---------------------------------------------------------------------------------


def test_bad_promql_is_an_error_measurement_with_prometheus_text(prom_backfilled: PromData) -> None:
    m = measure(prom_backfilled, "healthy", check({"max": 1}, 'sum(rate(x{app="{{app}}"}[30s])'))
    assert m.phase is Phase.ERROR
    assert m.value is None
    assert "parse error" in m.message
    assert m.query == 'sum(rate(x{app="healthy"}[30s])'


def test_a_range_vector_result_is_an_error_measurement(prom_backfilled: PromData) -> None:
    m = measure(prom_backfilled, "healthy", check({"max": 1}, 'http_requests_total{app="{{app}}"}[1m]'))
    assert m.phase is Phase.ERROR
    assert "range vector" in m.message


def test_an_unsafe_variable_is_an_error_measurement_that_sends_nothing(
    prom_backfilled: PromData, prom_proxy: PromProxy
) -> None:
    m = measure(prom_backfilled, "healthy", check({"max": 1}), url=prom_proxy.url, namespace='prod"} or vector(1)')
    assert m.phase is Phase.ERROR
    assert "namespace" in m.message
    assert prom_proxy.seen == []


def test_unreachable_prometheus_raises_for_the_activity_to_retry(prom_backfilled: PromData) -> None:
    with pytest.raises(UnreachableError) as caught:
        measure(prom_backfilled, "healthy", check({"max": 1}), url=f"http://127.0.0.1:{free_port()}")
    assert caught.value.retryable is True


def test_a_failing_gateway_raises_a_retryable_error(prom_backfilled: PromData, prom_proxy: PromProxy) -> None:
    prom_proxy.fail_with = 502
    with pytest.raises(MetricError) as caught:
        measure(prom_backfilled, "healthy", check({"max": 1}), url=prom_proxy.url)
    assert caught.value.retryable is True


# -- live data, as workflow tests see it -----------------------------------------------------


def test_live_data_at_now(prom_live: PromData) -> None:
    provider = PrometheusProvider(PrometheusSettings(url=prom_live.url))
    c = check({"max": 0.02})
    healthy = evaluate(c, provider, prom_live.scenarios["healthy"].variables())
    broken = evaluate(c, provider, prom_live.scenarios["broken"].variables())
    nodata = evaluate(c, provider, prom_live.scenarios["nodata"].variables())
    assert (healthy.phase, broken.phase, nodata.phase) == (Phase.SUCCESSFUL, Phase.FAILED, Phase.FAILED)
    assert healthy.value == pytest.approx(0.005) and broken.value == pytest.approx(0.10)
    assert nodata.values == []


def test_sides_chosen_by_the_caller_are_named_in_the_message(prom_backfilled: PromData) -> None:
    # A flag ramp compares variants: here the "treatment" is the broken canary, the "control" its stable track.
    variables = prom_backfilled.scenarios["broken"].variables()
    m = evaluate_sides(
        check({"compareTo": "stable", "maxRatio": 2}),
        PrometheusProvider(PrometheusSettings(url=prom_backfilled.url)),
        Side("on", variables, kind="variant", selectors={"track_selector": 'track="canary"'}),
        Side("off", variables, kind="variant", selectors={"track_selector": 'track!~"canary|baseline"'}),
        at=prom_backfilled.at,
    )
    assert m.phase is Phase.FAILED
    assert "(on 0.1, off 0.005)" in m.message
    assert m.control_query is not None and 'track!~"canary|baseline"' in m.control_query
