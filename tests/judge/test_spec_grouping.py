"""What a judge spec refuses at validate time: counters summed over pods, and tolerances it can never show."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from orchestrator.specs.checks import Check

SELECTOR = 'http_requests_total{app="{{app}}",{{track_selector}}}'
BUCKETS = 'http_request_duration_seconds_bucket{app="{{app}}",{{track_selector}}}'


def judge(**fields: object) -> Check:
    return Check.model_validate({"name": "j", "interval": "10s", "judge": fields})


@pytest.mark.parametrize("query", [f"sum({SELECTOR})", f"sum by (code) ({SELECTOR})", f"sum without (pod) ({SELECTOR})",
                                   f"sum({SELECTOR}) by (app)"])
def test_a_counter_summed_over_pods_is_refused_with_the_shape_to_write(query: str) -> None:
    with pytest.raises(ValidationError, match=r"keep one series per pod \(or instance\), e.g. sum by \(pod\)"):
        judge(errors=query, requests=f"sum by (pod) ({SELECTOR})")


def test_a_histogram_summed_over_pods_is_refused() -> None:
    with pytest.raises(ValidationError, match="the latency query aggregates over pods"):
        judge(latency=f"sum by (le) ({BUCKETS})")


@pytest.mark.parametrize("query", [f"sum by (pod) ({SELECTOR})", f"sum by (instance, code) ({SELECTOR})",
                                   f"sum without (code) ({SELECTOR})", SELECTOR, f"sum({SELECTOR}) by (pod)"])
def test_per_pod_shapes_are_accepted(query: str) -> None:
    assert judge(errors=query, requests=query).judge is not None
    assert judge(latency=query.replace("http_requests_total", "http_request_duration_seconds_bucket")).judge


def test_a_tolerance_finer_than_one_percent_is_refused_and_one_percent_is_accepted() -> None:
    per_pod = f"sum by (pod) ({SELECTOR})"
    with pytest.raises(ValidationError, match=r"the smallest is \+1% \(1.01x\)"):
        judge(errors=per_pod, requests=per_pod, tolerance="+0.5%")
    check = judge(errors=per_pod, requests=per_pod, tolerance="+1%")
    assert check.judge is not None and check.judge.effective_tolerance == pytest.approx(1.01)
