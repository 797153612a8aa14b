"""``canary plan``'s arithmetic on plain numbers: what a step needs, for the cases the judge decides differently."""

from __future__ import annotations

import math
from typing import Any

from orchestrator.gates.judge import rate_log_evidence
from orchestrator.gates.judge_plan import clean_time, plan
from orchestrator.specs.canary import CanaryRollout

REQUESTS = 'sum by (pod) (x{app="{{app}}",{{track_selector}}})'
ERRORS = 'sum by (pod) (x{app="{{app}}",{{track_selector}},code="500"})'


def rollout(judge: dict[str, Any], duration: str = "2m") -> CanaryRollout:
    return CanaryRollout.model_validate({
        "kind": "CanaryRollout", "metadata": {"name": "shop"},
        "spec": {"target": {"namespace": "demo", "deployment": "shop"}, "steps": [
            {"setWeight": 25},
            {"analysis": {"duration": duration, "checks": [
                {"name": "errors", "interval": "3s", "judge": {"errors": ERRORS, "requests": REQUESTS, **judge}}]}}]}})


def test_clean_time_is_when_the_averaged_evidence_of_a_clean_canary_reaches_one_over_alpha() -> None:
    # No errors: the ratio's e-value is 1, so the average reaches 100 when the rate's reaches 199.
    seconds = clean_time(10.0, 0.0, negligible=0.02, alpha=0.01, interval=3.0)
    assert seconds is not None and seconds % 3 == 0
    assert rate_log_evidence(0, 10.0 * seconds, 0.02, 0.02) >= math.log(199)  # clean by then
    assert rate_log_evidence(0, 10.0 * (seconds - 3), 0.02, 0.02) < math.log(199)  # and not one look earlier
    assert clean_time(10.0, 0.03, negligible=0.02, alpha=0.01, interval=3.0) is None  # above it: never


def test_a_stable_with_no_errors_is_planned_as_the_judge_decides_it() -> None:
    # The sandbox's demo app fails no request: no error ratio can be judged, but with negligibleRate a
    # clean canary is promoted early; without it the step can only end "not enough traffic".
    with_negligible = plan(rollout({"negligibleRate": "2%"}), {"errors": (40.0, 0.0)}, alpha_of={"errors": 0.01})
    line = with_negligible[0].line()
    assert "the stable served no error: no error ratio to judge" in line, line
    assert "a canary as clean is promoted after about" in line and "(negligibleRate 2 %)" in line, line
    assert with_negligible[0].enough, line
    without = plan(rollout({}), {"errors": (40.0, 0.0)}, alpha_of={"errors": 0.01})
    assert "expect 'not enough traffic'" in without[0].line() and not without[0].enough


def test_a_stable_with_errors_also_says_when_a_clean_canary_is_promoted() -> None:
    plans = plan(rollout({"negligibleRate": "2%", "tolerance": "2x"}, "30m"), {"errors": (100.0, 0.005)},
                 alpha_of={"errors": 0.01})
    line = plans[0].line()
    assert "a version no different from the stable is promoted after about" in line, line
    assert "a 4x error regression is caught after about" in line, line  # beyond the tolerance: its square
    assert "a canary as clean is promoted after about" in line, line


def test_the_plan_says_what_a_single_canary_pod_can_show() -> None:
    # Pods ±30 % (the default), alpha 1 %: half of it on the pods, z(0.995) = 2.576, so one canary pod is
    # rolled back only beyond 2x * exp(2.576 * 0.3) = 4.3x.
    line = plan(rollout({"tolerance": "2x"}, "30m"), {"errors": (100.0, 0.005)}, alpha_of={"errors": 0.01})[0].line()
    assert "let a single canary pod be rolled back only when shown beyond 4.3x" in line, line


def test_preflight_says_before_the_start_which_step_cannot_decide_and_what_would() -> None:
    from orchestrator.gates.judge_plan import preflight

    # 400 rps with 0.5 % errors, 25 % weight for 2 minutes: too little to show an unchanged version within 1.2x.
    lines = preflight(rollout({"tolerance": "1.2x"}, "2m"), {"errors": (400.0, 0.005)}, alpha_of={"errors": 0.01})
    assert len(lines) == 1, lines
    assert lines[0].startswith("step 2: errors at 25 % weight cannot promote a version no different from the stable "
                               "within its 2 min"), lines[0]  # fmt: skip
    assert "it would end 'not enough traffic', which never promotes; it would decide with a step of at least" \
        in lines[0], lines[0]
    # Plenty of traffic: nothing to say.
    assert preflight(rollout({"tolerance": "2x"}, "30m"), {"errors": (5000.0, 0.01)}, alpha_of={"errors": 0.01}) == []
