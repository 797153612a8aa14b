"""The judge decides against the tolerance, both ways, under one bound (issue 20, part 1).

Driven through the pure entry points (``judge_update`` / ``judge_finish``) one look at a time, as the
worker does: a canary within its tolerance is not rolled back, any tolerance a user can write can be
promoted, ``negligibleRate`` is not a second route to promotion, and the interval says its real level.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from orchestrator.gates.dispersion import INDEPENDENT
from orchestrator.gates.judge import JudgeLook, JudgeState, Outcome, Side, judge_finish, judge_update
from orchestrator.specs.checks import Check

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ERRORS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code=~"5.."})'
REQUESTS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})'


def counts_check(**judge: object) -> Check:
    return Check.model_validate(
        {"name": "errors", "interval": "10s", "judge": {"errors": ERRORS, "requests": REQUESTS, **judge}}
    )


def _start(check: Check) -> JudgeState:
    state, _ = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=0.01)
    return state


def _look(i: int, nc: float, ec: float, n0: float, e0: float) -> JudgeLook:
    return JudgeLook(at=T0 + timedelta(seconds=10 * (i + 1)), canary=Side(requests=nc, errors=ec),
                     control=Side(requests=n0, errors=e0))  # fmt: skip


def test_a_canary_within_its_tolerance_is_not_rolled_back_at_high_traffic() -> None:
    # 1.1x the control's errors with a 1.2x tolerance: "the regression that matters" is not there. Testing
    # "worse than the control at all" rolled this back about two thirds of the time at this traffic.
    check = counts_check(tolerance="1.2x")
    rng = np.random.default_rng(20)
    runs, rolled_back = 60, 0
    for _ in range(runs):
        state = _start(check)
        for i in range(40):
            nc, n0 = rng.poisson(20000, 2)
            look = _look(i, nc, rng.binomial(nc, 0.011), n0, rng.binomial(n0, 0.01))
            state, verdict = judge_update(check, state, look, alpha=0.01)
            if verdict.outcome is not Outcome.RUNNING:
                break
        rolled_back += verdict.outcome is Outcome.FAILED
    # Bound 1 %: 60 runs allow 3 (binomial tail 0.3 %); the old rule rolled back ~40 of them.
    assert rolled_back <= 3, rolled_back


def test_a_canary_beyond_its_tolerance_is_still_rolled_back() -> None:
    check = counts_check(tolerance="1.2x")
    state = _start(check)
    for i in range(30):
        state, verdict = judge_update(check, state, _look(i, 20000, 300, 20000, 200), alpha=0.01)
        if verdict.outcome is not Outcome.RUNNING:
            break
    assert verdict.outcome is Outcome.FAILED, verdict.message


def test_a_two_percent_tolerance_can_promote_and_says_what_it_needs() -> None:
    # +2 % (the shipped flag-ramp example): a grid 5 % apart could never show a ratio within it.
    check = counts_check(tolerance="+2%")
    state = _start(check)
    state, verdict = judge_update(check, state, _look(0, 10_000, 50, 10_000, 50), alpha=0.01)
    assert verdict.outcome is Outcome.RUNNING
    finished = judge_finish(check, state, alpha=0.01)
    assert finished.needed_requests is not None and finished.needed_requests > 1_000_000, finished.message
    for i in range(1, 400):
        state, verdict = judge_update(check, state, _look(i, 1_000_000, 5_000, 1_000_000, 5_000), alpha=0.01)
        if verdict.outcome is not Outcome.RUNNING:
            break
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.message


def test_the_negligible_rate_is_averaged_into_the_promotion_not_a_second_route() -> None:
    # No error on either side: the ratio carries no evidence (e-value 1). Promotion needs the average of
    # the ratio's and the rate's e-values to reach 100, i.e. the rate's alone to reach 199, not 100.
    from orchestrator.gates.judge import rate_log_evidence

    check = counts_check(negligibleRate="1%")
    state = _start(check)
    requests = next(n for n in range(100, 5000, 10) if rate_log_evidence(0, n, 0.01, 0.01) >= np.log(100))
    state, verdict = judge_update(check, state, _look(0, requests, 0, requests, 0), alpha=0.01)
    assert verdict.outcome is Outcome.RUNNING, verdict.message
    more = next(n for n in range(requests, 20000, 10) if rate_log_evidence(0, n, 0.01, 0.01) >= np.log(199))
    state, verdict = judge_update(check, state, _look(1, more - requests, 0, more - requests, 0), alpha=0.01)
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.message
    assert "within the negligible rate 1.0 % -> promote" in verdict.message


def test_the_two_sided_sequence_is_labelled_with_its_real_level() -> None:
    # Each end holds with 99 %, so the interval with both ends holds with 98 %.
    check = counts_check()
    state = _start(check)
    _, verdict = judge_update(check, state, _look(0, 500, 9, 1500, 8), alpha=0.01)
    assert "98 % confidence sequence" in verdict.message, verdict.message


def test_a_declared_warmup_is_not_counted_and_counting_resumes_after_it() -> None:
    # A canary failing 5x the stable's rate for its first minute (cold caches), then as the stable: with
    # warmup: 60s its first looks carry no evidence and do not roll it back.
    check = counts_check(tolerance="1.2x", warmup="60s")
    state = _start(check)
    for i in range(6):
        state, verdict = judge_update(check, state, _look(i, 20000, 500, 20000, 100), alpha=0.01)
        assert verdict.reason == "warm-up" and "warm-up: looks within 60 s of the first are not counted" in \
            verdict.message, verdict.message
    assert state.canary_requests == 0 and state.outcome is Outcome.RUNNING
    state, verdict = judge_update(check, state, _look(6, 20000, 100, 20000, 100), alpha=0.01)
    assert state.canary_requests == 20000 and verdict.outcome is not Outcome.FAILED, verdict.message


def test_a_gauge_within_its_tolerance_is_not_rolled_back() -> None:
    # Memory 5 % above the control with a +10 % tolerance: shown above 0, but not beyond the tolerance.
    check = Check.model_validate({"name": "memory", "judge": {
        "gauge": 'container_memory_working_set_bytes{app="{{app}}",{{track_selector}}}', "tolerance": "+10%"}})
    state = _start(check)
    rng = np.random.default_rng(4)
    for i in range(300):
        look = JudgeLook(at=T0 + timedelta(seconds=30 * (i + 1)), canary=Side(gauge=list(105 + rng.normal(0, 1, 3))),
                         control=Side(gauge=list(100 + rng.normal(0, 1, 5))))  # fmt: skip
        state, verdict = judge_update(check, state, look, alpha=0.01)
        assert verdict.outcome is not Outcome.FAILED, verdict.message
