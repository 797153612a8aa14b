"""The score formula on cases whose expected numbers are worked out by hand in each test.

Default weights: deviation 0.35, recovery 0.30, budget 0.20, detection 0.15.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from orchestrator.scoring.formula import (
    ScoringConfig,
    Status,
    freshness,
    normalised_deviation,
    score_run,
    score_service,
)
from orchestrator.scoring.model import BlastRadius, ErrorBudget, Outcome, RunRecord, Tolerance
from tests.scoring import T0, error_rate, make_run

NOW = T0 + timedelta(seconds=90)


def sub(run: RunRecord, name: str) -> float | None:
    return next(s.value for s in score_run(run).subscores if s.name == name)


def test_perfect_run_scores_100() -> None:
    result = score_run(make_run())
    assert result.score == pytest.approx(100.0)
    assert result.status is Status.RESILIENT
    assert result.cap is None
    assert {s.name: s.weight for s in result.subscores} == {
        "deviation": pytest.approx(0.35),
        "recovery": pytest.approx(0.30),
        "detection": pytest.approx(0.15),
        "budget": pytest.approx(0.20),
        "containment": None,
    }


def test_deviation_halfway_to_the_bound() -> None:
    # steady 0.01, ceiling 0.05, peak 0.03: (0.03 - 0.01) / (0.05 - 0.01) = 0.5 of the tolerance used
    # -> deviation 0.5 -> 100 * (1 - 0.35 * 0.5) = 82.5
    run = make_run(checks=[error_rate(during=[0.01, 0.02, 0.03, 0.01])])
    assert sub(run, "deviation") == pytest.approx(0.5)
    assert score_run(run).score == pytest.approx(82.5)


def test_deviation_at_or_beyond_the_bound_is_zero() -> None:
    at_bound = make_run(checks=[error_rate(during=[0.05])])
    beyond = make_run(checks=[error_rate(during=[0.2])])
    assert sub(at_bound, "deviation") == 0.0
    assert sub(beyond, "deviation") == 0.0
    # 100 * (1 - 0.35) = 65
    assert score_run(beyond).score == pytest.approx(65.0)


def test_deviation_uses_the_weakest_check_and_the_lower_bound() -> None:
    throughput = error_rate(during=[100.0, 70.0], before=[100.0], tolerance=Tolerance(min=40.0))
    throughput = throughput.model_copy(update={"name": "throughput"})
    # throughput: steady 100, floor 40, dip to 70 -> 30 / 60 = 0.5 used -> 0.5; error-rate perfect -> 1
    run = make_run(checks=[error_rate(), throughput])
    assert sub(run, "deviation") == pytest.approx(0.5)


@pytest.mark.parametrize("during", [[0.01, float("nan"), 0.01], [0.01, None], []])
def test_no_data_during_the_fault_is_the_worst_case(during: list[float | None]) -> None:
    run = make_run(checks=[error_rate(during=during)])
    assert sub(run, "deviation") == 0.0
    assert score_run(run).score == pytest.approx(65.0)


def test_no_steady_state_reference_fails_closed() -> None:
    check = error_rate().model_copy(update={"before": []})
    assert sub(make_run(checks=[check]), "deviation") == 0.0
    with_baseline = check.model_copy(update={"tolerance": Tolerance(max=0.05, baseline=0.01)})
    assert sub(make_run(checks=[with_baseline]), "deviation") == 1.0


def test_normalised_deviation_edges() -> None:
    band = Tolerance(min=0.0, max=10.0)
    assert normalised_deviation(5.0, 5.0, band) == 0.0
    assert normalised_deviation(7.5, 5.0, band) == pytest.approx(0.5)
    assert normalised_deviation(2.5, 5.0, band) == pytest.approx(0.5)
    assert normalised_deviation(float("inf"), 5.0, band) == 1.0
    # moving towards a side without a bound costs nothing
    assert normalised_deviation(-100.0, 5.0, Tolerance(max=10.0)) == 0.0
    # already on the bound before the fault: no room left
    assert normalised_deviation(10.5, 10.0, Tolerance(max=10.0)) == 1.0


def test_never_recovered_is_capped_at_25() -> None:
    # recovery 0, the rest perfect: 0.35 + 0.15 + 0.20 = 0.70 -> capped at 0.25 -> 25
    run = make_run(recovery_time=None)
    result = score_run(run)
    assert sub(run, "recovery") == 0.0
    assert result.score == pytest.approx(25.0)
    assert result.status is Status.FRAGILE
    assert result.cap is not None and "never recovered" in result.cap


@pytest.mark.parametrize(
    ("seconds", "expected_sub", "expected_score"),
    [
        (60, 1.0, 100.0),  # at the objective
        (120, 0.5, 85.0),  # 2x: 1 - (2 - 1) / (3 - 1) = 0.5 -> 100 - 30 * 0.5
        (180, 0.0, 70.0),  # 3x: 0, recovered so no cap -> 100 - 30
        (600, 0.0, 70.0),
    ],
)
def test_recovery_decays_linearly_to_three_times_the_objective(
    seconds: int, expected_sub: float, expected_score: float
) -> None:
    run = make_run(recovery_time=timedelta(seconds=seconds))
    assert sub(run, "recovery") == pytest.approx(expected_sub)
    assert score_run(run).score == pytest.approx(expected_score)


def test_detection_late_and_never() -> None:
    # objective 60 s, detected at 90 s: 1 - 0.5 / 2 = 0.75 -> 100 - 15 * 0.25 = 96.25
    late = make_run(detection_time=timedelta(seconds=90))
    assert sub(late, "detection") == pytest.approx(0.75)
    assert score_run(late).score == pytest.approx(96.25)
    never = make_run(detection_time=None)
    assert sub(never, "detection") == 0.0
    assert score_run(never).score == pytest.approx(85.0)


def test_no_detection_objective_shares_its_weight() -> None:
    # weights without detection: 0.35/0.85, 0.30/0.85, 0.20/0.85; deviation 0.5
    # -> 100 * (1 - 0.5 * 0.35 / 0.85) = 100 * (1 - 0.205882...) = 79.4117...
    run = make_run(detection_objective=None, detection_time=None, checks=[error_rate(during=[0.03])])
    result = score_run(run)
    assert sub(run, "detection") is None
    assert result.score == pytest.approx(79.41176, abs=1e-4)
    weights = {s.name: s.weight for s in result.subscores}
    assert weights["deviation"] == pytest.approx(0.411765, abs=1e-6)
    assert weights["detection"] is None


def test_budget_burn_halfway_and_beyond() -> None:
    # max burn 5 %; 2.5 % burned -> 0.5 -> 100 - 20 * 0.5 = 90
    half = make_run(error_budget=ErrorBudget(slo_target=0.999, burned=0.025))
    assert sub(half, "budget") == pytest.approx(0.5)
    assert score_run(half).score == pytest.approx(90.0)
    all_of_it = make_run(error_budget=ErrorBudget(slo_target=0.999, burned=0.4))
    assert sub(all_of_it, "budget") == 0.0
    assert score_run(all_of_it).score == pytest.approx(80.0)


def test_no_budget_declared_shares_its_weight() -> None:
    # without budget: recovery weighs 0.30 / 0.80 = 0.375; recovery 0.5 -> 100 * (1 - 0.1875) = 81.25
    run = make_run(error_budget=None, recovery_time=timedelta(seconds=120))
    assert score_run(run).score == pytest.approx(81.25)


@pytest.mark.parametrize(
    "radius",
    [
        BlastRadius(allowed=["checkout-a"], touched=["checkout-a", "payments-a"]),
        BlastRadius(allowed=["checkout-a", "checkout-b"], touched=["checkout-a", "checkout-b"], max_targets=1),
    ],
)
def test_escaped_blast_radius_scores_zero(radius: BlastRadius) -> None:
    result = score_run(make_run(blast_radius=radius))
    assert result.score == 0.0
    assert result.status is Status.ESCAPED
    assert next(s for s in result.subscores if s.name == "containment").value == 0.0


@pytest.mark.parametrize("outcome", [Outcome.REFUSED, Outcome.FAILED])
def test_runs_without_a_judged_fault_are_not_scored(outcome: Outcome) -> None:
    result = score_run(make_run(outcome=outcome))
    assert result.score is None
    assert result.status is Status.UNSCORED


def test_a_breached_run_is_scored_from_its_evidence() -> None:
    run = make_run(outcome=Outcome.BREACHED, checks=[error_rate(during=[0.01, 0.09])])
    assert score_run(run).score == pytest.approx(65.0)


# -- service aggregation -----------------------------------------------------------------------------------


def test_freshness_halves_every_half_life() -> None:
    assert freshness(timedelta(0)) == 1.0
    assert freshness(timedelta(days=14)) == pytest.approx(0.5)
    assert freshness(timedelta(days=28)) == pytest.approx(0.25)
    assert freshness(timedelta(days=-3)) == 1.0
    assert freshness(timedelta(days=7), ScoringConfig(half_life=timedelta(days=7))) == pytest.approx(0.5)


def test_a_14_day_old_experiment_counts_half() -> None:
    fresh = make_run(run_id="a", experiment="pod-kill")  # 100
    old = make_run(
        run_id="b",
        experiment="scale-down",
        ended_at=NOW - timedelta(days=14),
        recovery_time=timedelta(seconds=180),  # 70
        detection_time=None,  # 70 - 15 = 55
        error_budget=ErrorBudget(slo_target=0.999, burned=0.05),  # 55 - 20 = 35
        checks=[error_rate(during=[0.03])],  # 35 - 17.5 = 17.5
    )
    assert score_run(old).score == pytest.approx(17.5)
    # weights 1 and 0.5: (1 * 100 + 0.5 * 17.5) / 1.5 = 108.75 / 1.5 = 72.5
    result = score_service("shop/checkout", [fresh, old], NOW)
    assert result.score == pytest.approx(72.5)
    assert result.status is Status.DEGRADED
    assert [e.weight for e in result.experiments] == [pytest.approx(1.0), pytest.approx(0.5)]


def test_stale_evidence_alone_scales_the_score_down() -> None:
    # one run of 82.5 ended 14 days ago: weight 0.5 < 1 needed -> 0.5 * 82.5 / 1 = 41.25
    run = make_run(ended_at=NOW - timedelta(days=14), checks=[error_rate(during=[0.03])])
    result = score_service("shop/checkout", [run], NOW)
    assert result.score == pytest.approx(41.25)
    assert result.evidence == pytest.approx(0.5)


def test_identical_runs_carry_no_repeatability_penalty() -> None:
    runs = [
        make_run(run_id=f"r{i}", ended_at=NOW - timedelta(hours=i), checks=[error_rate(during=[0.03])])
        for i in range(3)
    ]
    result = score_service("shop/checkout", runs, NOW)
    assert result.experiments[0].stddev == pytest.approx(0.0)
    assert result.score == pytest.approx(82.5)


def test_divergent_runs_are_penalised_by_one_standard_deviation() -> None:
    good = make_run(run_id="good")  # 100
    bad = make_run(
        run_id="bad",
        recovery_time=timedelta(seconds=120),  # 100 - 15 = 85
        error_budget=ErrorBudget(slo_target=0.999, burned=0.05),  # 85 - 20 = 65
    )
    assert score_run(bad).score == pytest.approx(65.0)
    # same age: mean 82.5, population sd 17.5 -> 82.5 - 17.5 = 65
    result = score_service("shop/checkout", [good, bad], NOW)
    experiment = result.experiments[0]
    assert experiment.mean == pytest.approx(82.5)
    assert experiment.stddev == pytest.approx(17.5)
    assert result.score == pytest.approx(65.0)
    # with the penalty switched off the mean stands
    assert score_service("shop/checkout", [good, bad], NOW, ScoringConfig(repeatability_k=0)).score == (
        pytest.approx(82.5)
    )


def test_unscored_runs_are_listed_but_do_not_count() -> None:
    refused = make_run(run_id="refused", outcome=Outcome.REFUSED)
    result = score_service("shop/checkout", [make_run(), refused], NOW)
    assert result.score == pytest.approx(100.0)
    assert len(result.runs) == 2
    assert [p.run_id for p in result.trend] == ["run-1"]
    only_refused = score_service("shop/checkout", [refused], NOW)
    assert only_refused.score is None
    assert only_refused.status is Status.UNSCORED


def test_trend_points_and_direction() -> None:
    deviations = [0.05, 0.05, 0.05, 0.01, 0.01, 0.01]  # three runs at 65 then three at 100
    runs = [
        make_run(run_id=f"r{i}", ended_at=NOW - timedelta(days=6 - i), checks=[error_rate(during=[d])])
        for i, d in enumerate(deviations)
    ]
    result = score_service("shop/checkout", runs, NOW)
    assert [p.score for p in result.trend] == pytest.approx([65, 65, 65, 100, 100, 100])
    assert [p.run_id for p in result.trend] == [f"r{i}" for i in range(6)]
    assert result.direction == "improving"
    assert score_service("shop/checkout", list(reversed(runs))[:1], NOW).direction == "too few runs"


def test_the_formula_is_deterministic() -> None:
    runs = [make_run(run_id="x", checks=[error_rate(during=[0.02, math.nan])]), make_run(run_id="y")]
    first = score_service("shop/checkout", runs, NOW).model_dump_json()
    assert score_service("shop/checkout", list(reversed(runs)), NOW).model_dump_json() == first
