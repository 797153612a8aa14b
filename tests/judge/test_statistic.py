"""The judge's statistic: exact small cases, validity under the null, and the verdict's words."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.gates.dispersion import INDEPENDENT
from orchestrator.gates.judge import (
    GRID,
    ZERO,
    JudgeLook,
    JudgeState,
    Outcome,
    Side,
    alpha_note,
    alpha_per_check,
    bounds,
    counts_increment,
    decide_counts,
    evidence,
    judge_finish,
    judge_update,
    tail_bound,
)
from orchestrator.gates.model import CheckPhase, Phase
from orchestrator.specs.checks import Check

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ERRORS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code=~"5.."})'
REQUESTS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})'


def counts_check(**judge: object) -> Check:
    return Check.model_validate(
        {"name": "errors", "interval": "10s", "judge": {"errors": ERRORS, "requests": REQUESTS, **judge}}
    )


def test_one_look_increment_matches_the_binomial_likelihood_ratio() -> None:
    # canary 3 of 4 errors with equal traffic: at rho = e (log 1.0) p = e/(e+1) = 0.731059,
    # log LR = 3 log(2p) + 1 log(2(1-p)) = 3 * 0.3798854 - 0.6201145 = 0.519542.
    inc = counts_increment(100, 3, 100, 1)
    at_one = int(np.argmin(np.abs(GRID - 1.0)))
    assert inc[ZERO] == 0.0
    assert inc[at_one] == pytest.approx(0.519542, abs=1e-6)
    # A quarter of the traffic on the canary, rho = 1/e: p = 0.25/e / (0.25/e + 0.75) = 0.109232;
    # log LR = 3 log(p/0.25) + log((1-p)/0.75) = 3 * (-0.8279889) + 0.1720111 = -2.3119556.
    inc = counts_increment(50, 3, 150, 1)
    at_minus_one = int(np.argmin(np.abs(GRID + 1.0)))
    assert inc[at_minus_one] == pytest.approx(-2.3119558, abs=1e-6)


def test_looks_without_errors_or_without_traffic_on_a_side_carry_no_evidence() -> None:
    assert not counts_increment(100, 0, 100, 0).any()
    assert not counts_increment(0, 0, 100, 3).any()
    assert not counts_increment(100, 2, 0, 0).any()


def test_evidence_is_the_prior_weighted_mixture_against_the_boundary() -> None:
    # Independent computation of the one-sided mixture: sum_k w_k LR_k / sum_k w_k over log rho > boundary,
    # with w_k the normal prior density (sd 1) times the width of grid cell k.
    loglik = counts_increment(1000, 12, 1000, 3)
    weights = np.exp(-0.5 * GRID**2) * np.gradient(GRID)
    up = GRID > 0
    expected = np.log(np.sum(weights[up] * np.exp(loglik[up])) / np.sum(weights[up]))
    assert float(evidence(loglik, 1.2)) == pytest.approx(expected, rel=1e-9)
    assert float(evidence(loglik, 1.2, upward=False)) < 0  # a higher canary is no evidence of it being better


def test_confidence_sequence_brackets_the_estimate_and_shrinks_with_data() -> None:
    few = counts_increment(1000, 10, 1000, 5)
    many = counts_increment(100000, 1000, 100000, 500)
    lo1, hi1 = (float(x) for x in bounds(few, 0.01, 1.2))
    lo2, hi2 = (float(x) for x in bounds(many, 0.01, 1.2))
    assert lo1 < math.log(2) < hi1
    assert lo2 < math.log(2) < hi2
    assert hi2 - lo2 < (hi1 - lo1) / 3
    assert lo2 > 0  # 1000 vs 500 errors: clearly worse


def test_alpha_is_split_over_the_rollouts_judge_checks() -> None:
    assert alpha_per_check(0.01, 5) == pytest.approx(0.002)
    assert alpha_per_check(0.01, 0) == 0.01


def test_a_regressed_canary_fails_with_an_explained_verdict() -> None:
    check = counts_check(tolerance="1.2x")
    state, verdict = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=0.01)
    assert verdict.outcome is Outcome.RUNNING and verdict.reason == "starting"
    look = JudgeLook(at=T0 + timedelta(seconds=60), canary=Side(requests=2000, errors=38),
                     control=Side(requests=2100, errors=10))  # fmt: skip
    state, verdict = judge_update(check, state, look, alpha=0.01)
    assert verdict.outcome is Outcome.FAILED
    assert verdict.phase is Phase.FAILED
    assert verdict.status(2).phase is CheckPhase.FAILED
    assert "canary 1.9 % errors (38/2,000) vs stable 0.48 % (10/2,100); ratio 4.0" in verdict.message
    assert ">= 100 -> rollback; false-rollback bound 1 %" in verdict.message
    assert verdict.evidence is not None and verdict.evidence >= 100
    # Final outcomes never change, whatever comes next.
    after, again = judge_update(check, state, JudgeLook(at=T0 + timedelta(seconds=70),
                                canary=Side(requests=10**6, errors=0), control=Side(requests=10**6, errors=5000)),
                                alpha=0.01)  # fmt: skip
    assert again.outcome is Outcome.FAILED
    assert judge_finish(check, after, alpha=0.01).outcome is Outcome.FAILED


def test_a_starved_canary_ends_not_enough_traffic_with_what_it_would_need() -> None:
    check = counts_check()
    state, _ = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=0.01)
    state, verdict = judge_update(check, state, JudgeLook(at=T0 + timedelta(minutes=10),
                                  canary=Side(requests=300, errors=1), control=Side(requests=300, errors=2)),
                                  alpha=0.01)  # fmt: skip
    assert verdict.outcome is Outcome.RUNNING and verdict.phase is Phase.INCONCLUSIVE
    final = judge_finish(check, state, alpha=0.01)
    assert final.outcome is Outcome.NOT_ENOUGH_TRAFFIC
    assert final.status(1).phase is CheckPhase.INCONCLUSIVE
    assert final.status(1).outcome == "not enough traffic"
    assert final.reason == "not-enough-traffic"
    assert final.message.startswith("not enough traffic: canary 0.33 % errors (1/300)")
    assert final.needed_requests is not None and final.needed_requests > 10_000
    assert "more requests needed (about" in final.message
    assert final.message.endswith("by default a pause for a decision that rolls back after its timeout (1 h)")


def test_a_shared_outage_says_the_control_degraded_too() -> None:
    check = counts_check(tolerance="1.5x")
    history = [(0.0, 1_000_000.0), (1.0, 5_000.0)]  # 0.5 % before the rollout
    start = JudgeLook(at=T0, start=True, noise=INDEPENDENT, control_history=history)
    state, _ = judge_update(check, JudgeState(), start, alpha=0.01)
    look = JudgeLook(at=T0 + timedelta(minutes=5), canary=Side(requests=20000, errors=1000),
                     control=Side(requests=20000, errors=1000))  # fmt: skip
    _, verdict = judge_update(check, state, look, alpha=0.01)
    assert verdict.shared_outage
    assert "the stable degraded too (5.0 % now vs 0.5 % before the rollout)" in verdict.message
    assert verdict.outcome is not Outcome.FAILED


def test_the_tail_bound_sits_at_the_controls_quantile_and_converts_the_tolerance() -> None:
    # 1000 requests: 990 at or below 0.5 s, all at or below 1 s.
    history = [(0.1, 600.0), (0.25, 950.0), (0.5, 990.0), (1.0, 1000.0), (math.inf, 1000.0)]
    le, ratio = tail_bound(history, 0.99, 1.1)
    assert le == 0.5
    # A 10 % slower canary puts above 0.5 s what the control has above 0.4545 s. Within (0.25, 0.5] the
    # share above falls from 0.05 to 0.01 as a power law: log-share at 0.4545 s is
    # ln 0.05 + ln(1.8182)/ln 2 * (ln 0.01 - ln 0.05) = -2.99573 - 0.86250 * 1.60944 = -4.38387,
    # a share of 0.012479, which is 1.2479 times the 0.01 above 0.5 s.
    assert ratio == pytest.approx(1.2479, abs=2e-4)


def _simulate_null(seed: int, rps: float, base: float, looks: int, runs: int, drift: bool, alpha: float) -> float:
    """Share of identical canaries rolled back within ``looks`` looks (vectorised, same arithmetic)."""
    rng = np.random.default_rng(seed)
    loglik = np.zeros((runs, GRID.size))
    rejected = np.zeros(runs, dtype=bool)
    for i in range(looks):
        share = 0.05 + (0.4 * (i % 7) / 6 if drift else 0.0)  # the canary's weight changes every look
        nc = rng.poisson(rps * share * 10, runs)
        n0 = rng.poisson(rps * 0.05 * 10, runs)
        ec = rng.binomial(nc, base)
        e0 = rng.binomial(n0, base)
        loglik += counts_increment(nc, ec, n0, e0)
        rejected |= decide_counts(loglik, alpha, 1.2, sequence=False).failed  # at the boundary: 1x, identical
    return float(rejected.mean())


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    rps=st.sampled_from([100.0, 1000.0, 5000.0]),
    base=st.sampled_from([0.001, 0.005, 0.05]),
    drift=st.booleans(),
)
def test_identical_versions_are_rolled_back_less_often_than_alpha(seed: int, rps: float, base: float,
                                                                  drift: bool) -> None:  # fmt: skip
    # alpha 5 % so that a broken test would show within 400 runs: allow three binomial standard errors.
    alpha, runs = 0.05, 400
    rate = _simulate_null(seed, rps, base, looks=90, runs=runs, drift=drift, alpha=alpha)
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)


def test_a_real_regression_is_caught_by_the_same_arithmetic() -> None:
    # The property above must not hold because the judge never rejects: 2x at 1000 rps is caught.
    rng = np.random.default_rng(7)
    loglik = np.zeros((200, GRID.size))
    caught = np.zeros(200, dtype=bool)
    for _ in range(60):
        nc, n0 = rng.poisson(500, 200), rng.poisson(500, 200)
        loglik += counts_increment(nc, rng.binomial(nc, 0.01), n0, rng.binomial(n0, 0.005), math.log(1.2))
        caught |= decide_counts(loglik, 0.01, 1.2).failed
    assert caught.mean() > 0.9


def test_gauges_fail_on_a_clear_increase_and_promote_when_equal() -> None:
    check = Check.model_validate({"name": "memory", "judge": {
        "gauge": 'container_memory_working_set_bytes{app="{{app}}",{{track_selector}}}', "tolerance": "+10%"}})
    rng = np.random.default_rng(3)
    for shift, expected in ((0.3, Outcome.FAILED), (0.0, Outcome.SUCCESSFUL)):
        state, verdict = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=0.01)
        for i in range(1, 200):
            canary = list(100 * (1 + shift) + rng.normal(0, 3, 3))
            control = list(100 + rng.normal(0, 3, 5))
            look = JudgeLook(at=T0 + timedelta(seconds=30 * i), canary=Side(gauge=canary), control=Side(gauge=control))
            state, verdict = judge_update(check, state, look, alpha=0.01)
            if verdict.outcome is not Outcome.RUNNING:
                break
        assert verdict.outcome is expected, verdict.message
        assert "confidence sequence" in verdict.message
        # Autocorrelated readings break the sequence's level: no bound is claimed for gauges.
        assert "no false-rollback bound is stated for gauges" in verdict.message, verdict.message
        assert "false-rollback bound 1 %" not in verdict.message


def test_state_round_trips_through_json() -> None:
    check = counts_check()
    start = JudgeLook(at=T0, start=True, noise=INDEPENDENT, marks={"a": 1.0})
    state, _ = judge_update(check, JudgeState(), start, alpha=0.01)
    state, _ = judge_update(check, state, JudgeLook(at=T0 + timedelta(seconds=10),
                            canary=Side(requests=100, errors=1), control=Side(requests=100, errors=0)),
                            alpha=0.01)  # fmt: skip
    again = JudgeState.model_validate_json(state.model_dump_json())
    assert again == state
    assert len(state.model_dump_json()) < 6000


def test_the_verdict_says_how_the_rollouts_bound_is_split() -> None:
    check = counts_check()
    alpha = alpha_per_check(0.01, 4)
    state, _ = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=alpha, checks=4)
    look = JudgeLook(at=T0 + timedelta(seconds=60), canary=Side(requests=2000, errors=60),
                     control=Side(requests=2000, errors=10))  # fmt: skip
    _, verdict = judge_update(check, state, look, alpha=alpha, checks=4)
    assert verdict.outcome is Outcome.FAILED
    assert "false-rollback bound 1 % for the rollout, split over 4 judge checks (0.25 % each)" in verdict.message
    assert verdict.evidence is not None and verdict.evidence >= 400


def test_the_rate_bound_matches_its_closed_form_and_covers_the_true_rate() -> None:
    from scipy.special import gammainc, gammaln

    from orchestrator.gates.judge import rate_upper_bound

    # At the bound, the Gamma-mixture e-value equals 1/alpha exactly (here 2 errors in 5,000 requests).
    u = rate_upper_bound(2, 5000, 0.01, 0.001)
    a, b = 0.5, 500.0
    log_e = (a * math.log(b) - gammaln(a) + gammaln(2 + a) - (2 + a) * math.log(5000 + b)
             + math.log(gammainc(2 + a, (5000 + b) * u)) - math.log(gammainc(a, b * u)) - 2 * math.log(u) + 5000 * u)
    assert log_e == pytest.approx(math.log(100), abs=0.01)
    assert 2 / 5000 < u < 0.003
    # Looked at after every 1,000 requests for 40 looks, the bound drops below a true 0.2 % rarely.
    rng = np.random.default_rng(11)
    below = 0
    for _ in range(150):
        errors = np.cumsum(rng.poisson(2.0, 40))
        below += any(rate_upper_bound(float(e), 1000.0 * (i + 1), 0.05, 0.001) < 0.002 for i, e in enumerate(errors))
    assert below / 150 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 150)


def test_a_clean_canary_is_promoted_below_the_negligible_rate() -> None:
    check = counts_check(negligibleRate="0.1%")
    state, _ = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=0.01)
    state, verdict = judge_update(check, state, JudgeLook(at=T0 + timedelta(minutes=1),
                                  canary=Side(requests=1000, errors=0), control=Side(requests=1000, errors=0)),
                                  alpha=0.01)  # fmt: skip
    assert verdict.outcome is Outcome.RUNNING  # 0 of 1,000 does not show a rate below 0.1 %
    state, verdict = judge_update(check, state, JudgeLook(at=T0 + timedelta(minutes=10),
                                  canary=Side(requests=9000, errors=0), control=Side(requests=9000, errors=1)),
                                  alpha=0.01)  # fmt: skip
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.message
    assert verdict.reason == "negligible-errors"
    assert "within the negligible rate 0.1 % -> promote" in verdict.message


def test_the_confidence_is_said_exactly_when_the_bound_is_split() -> None:
    # With two judge checks each gets 0.5 %: its confidence sequence is a 99.5 % one, not "100 %".
    check = counts_check()
    state, _ = judge_update(check, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=0.005, checks=2)
    look = JudgeLook(at=T0 + timedelta(seconds=10), canary=Side(requests=500, errors=9),
                     control=Side(requests=1500, errors=8))
    _, verdict = judge_update(check, state, look, alpha=0.005, checks=2)
    # Each end at 99.5 %: the two-sided sequence is a 99 % one, and says so.
    assert "99 % confidence sequence" in verdict.message, verdict.message
    assert "100 %" not in verdict.message, verdict.message


def test_a_bound_split_in_three_is_said_in_plain_figures() -> None:
    assert alpha_note(0.01, 3) == "false-rollback bound 1 % for the rollout, split over 3 judge checks (0.333 % each)"
