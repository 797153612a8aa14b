"""The score formula on cases whose expected numbers are worked out by hand in each test.

Default weights: detection 0.2, auto-recovery 0.3, containment 0.2, customer impact 0.2, recovery 0.1.
``make_run`` gives a run where all five apply and score 1; each test changes one thing. These are
the worked examples of docs/scoring.md.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from orchestrator.errors import SpecError
from orchestrator.scoring.config import load_config, parse_config
from orchestrator.scoring.formula import (
    ScoringConfig,
    Status,
    Weights,
    freshness,
    normalised_deviation,
    score_run,
    score_service,
)
from orchestrator.scoring.model import BlastRadius, CustomerImpact, ErrorBudget, Outcome, RunRecord, Tolerance
from tests.scoring import T0, error_rate, make_run

NOW = T0 + timedelta(seconds=90)
BROKEN: list[float | None] = [0.01, 0.09]
"""Error rate beyond its 0.05 ceiling at the end of the fault: no recovery by itself (auto-recovery 0)."""


def sub(run: RunRecord, name: str, config: ScoringConfig | None = None) -> float | None:
    result = score_run(run, config) if config else score_run(run)
    return next(s.value for s in result.subscores if s.name == name)


def why(run: RunRecord, name: str) -> str:
    return next(s.why for s in score_run(run).subscores if s.name == name)


def test_perfect_run_scores_100_with_the_runbook_weights() -> None:
    result = score_run(make_run())
    assert result.score == pytest.approx(100.0)
    assert result.status is Status.RESILIENT
    assert result.cap is None
    assert {s.name: s.weight for s in result.subscores} == {
        "detection": pytest.approx(0.2),
        "auto-recovery": pytest.approx(0.3),
        "containment": pytest.approx(0.2),
        "impact": pytest.approx(0.2),
        "recovery": pytest.approx(0.1),
        "deviation": None,  # evidence rows
        "budget": None,
    }


# -- detection speed ---------------------------------------------------------------------------------------


def test_detection_late_and_never() -> None:
    # objective 60 s, detected at 90 s: 1 - (1.5 - 1) / (3 - 1) = 0.75 -> 100 - 20 * 0.25 = 95
    late = make_run(detection_time=timedelta(seconds=90))
    assert sub(late, "detection") == pytest.approx(0.75)
    assert score_run(late).score == pytest.approx(95.0)
    assert why(late, "detection") == "detected after 90s (objective 60s)"
    never = make_run(detection_time=None)
    assert sub(never, "detection") == 0.0
    assert score_run(never).score == pytest.approx(80.0)


def test_no_detection_objective_shares_its_weight() -> None:
    # without detection the others weigh 0.3/0.8, 0.2/0.8, 0.2/0.8, 0.1/0.8; recovery at 2x the objective (0.5)
    # -> 100 * (1 - 0.5 * 0.1 / 0.8) = 93.75
    run = make_run(detection_objective=None, detection_time=None, recovery_time=timedelta(seconds=120))
    result = score_run(run)
    assert sub(run, "detection") is None
    assert result.score == pytest.approx(93.75)
    weights = {s.name: s.weight for s in result.subscores}
    assert weights["auto-recovery"] == pytest.approx(0.375)
    assert weights["detection"] is None


# -- auto-recovery -----------------------------------------------------------------------------------------


def test_steady_state_that_held_needed_no_recovery() -> None:
    run = make_run(checks=[error_rate(during=[0.01, 0.03, 0.02])])
    assert sub(run, "auto-recovery") == 1.0
    assert "held inside its tolerance" in why(run, "auto-recovery")


def test_recovered_by_itself_while_the_fault_was_active() -> None:
    # out of tolerance from T0 + 10 s, back at T0 + 30 s: 20 s, within the 60 s objective -> 1
    quick = make_run(checks=[error_rate(during=[0.01, 0.09, 0.07, 0.01, 0.01])])
    assert sub(quick, "auto-recovery") == 1.0
    assert why(quick, "auto-recovery") == (
        "error-rate: out of tolerance at 12:00:10, back by itself after 20s with the fault still active "
        "(objective 60s)"
    )
    # out from T0 to T0 + 120 s: 2x the objective -> 0.5 -> 100 - 30 * 0.5 = 85
    slow = make_run(checks=[error_rate(during=[0.09 if i < 12 else 0.01 for i in range(13)])])
    assert sub(slow, "auto-recovery") == pytest.approx(0.5)
    assert score_run(slow).score == pytest.approx(85.0)


def test_still_broken_when_the_fault_was_removed_is_zero() -> None:
    # the revert, not the platform, brought it back: 100 - 30 = 70
    run = make_run(checks=[error_rate(during=BROKEN)])
    assert sub(run, "auto-recovery") == 0.0
    assert score_run(run).score == pytest.approx(70.0)
    assert "no recovery by itself" in why(run, "auto-recovery")


@pytest.mark.parametrize("during", [[0.01, float("nan")], [0.01, None], []])
def test_no_data_at_the_end_of_the_fault_is_the_worst_case(during: list[float | None]) -> None:
    run = make_run(checks=[error_rate(during=during)])
    assert sub(run, "auto-recovery") == 0.0
    assert sub(run, "deviation") == 0.0


def test_auto_recovery_takes_the_weakest_check() -> None:
    throughput = error_rate(during=[100.0, 30.0], before=[100.0], tolerance=Tolerance(min=40.0))
    throughput = throughput.model_copy(update={"name": "throughput"})
    run = make_run(checks=[error_rate(), throughput])
    assert sub(run, "auto-recovery") == 0.0
    assert why(run, "auto-recovery").startswith("throughput:")


# -- blast-radius containment ------------------------------------------------------------------------------


def test_containment_is_declared_over_actual_radius() -> None:
    # 1 pod touched (limit 1) but 3 seen not ready: 1 / 3 -> 100 - 20 * (2 / 3) = 86.67
    spread = make_run(blast_radius=BlastRadius(allowed=["a", "b", "c"], touched=["a"], max_targets=1,
                                               affected=["a", "b", "c"]))
    assert sub(spread, "containment") == pytest.approx(1 / 3)
    assert score_run(spread).score == pytest.approx(100 - 20 * 2 / 3)
    assert why(spread, "containment") == "3 reached (1 touched + 2 more seen affected (b, c)) vs 1 declared: 1/3"
    contained = make_run(blast_radius=BlastRadius(allowed=["a", "b"], touched=["a"], max_targets=1, affected=["a"]))
    assert sub(contained, "containment") == 1.0


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


# -- customer impact ---------------------------------------------------------------------------------------


def test_customer_impact_is_the_share_of_requests_affected() -> None:
    # 2 % failed + 1 % slow = 3 % affected; 0 at 10 %: 1 - 0.3 = 0.7 -> 100 - 20 * 0.3 = 94
    run = make_run(impact=CustomerImpact(failed_share=0.02, slow_share=0.01, samples=12))
    assert sub(run, "impact") == pytest.approx(0.7)
    assert score_run(run).score == pytest.approx(94.0)
    assert why(run, "impact") == (
        "2.00 % of requests failed, 1.00 % over the latency objective during the run (12 samples): "
        "3.00 % affected, 0 at 10 %"
    )
    outage = make_run(impact=CustomerImpact(failed_share=0.5, samples=3))
    assert sub(outage, "impact") == 0.0
    assert score_run(outage).score == pytest.approx(80.0)


def test_unmeasured_impact_shares_its_weight() -> None:
    # an older record without impact evidence: detection late (0.75) weighs 0.2 / 0.8 -> 100 - 25 * 0.25 = 93.75
    run = make_run(impact=None, detection_time=timedelta(seconds=90))
    assert sub(run, "impact") is None
    assert score_run(run).score == pytest.approx(93.75)


# -- recovery time and the cap -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "expected_sub", "expected_score"),
    [
        (60, 1.0, 100.0),  # at the objective
        (120, 0.5, 95.0),  # 2x: 1 - (2 - 1) / (3 - 1) = 0.5 -> 100 - 10 * 0.5
        (180, 0.0, 90.0),  # 3x: 0, recovered so no cap -> 100 - 10
        (600, 0.0, 90.0),
    ],
)
def test_recovery_decays_linearly_to_three_times_the_objective(
    seconds: int, expected_sub: float, expected_score: float
) -> None:
    run = make_run(recovery_time=timedelta(seconds=seconds))
    assert sub(run, "recovery") == pytest.approx(expected_sub)
    assert score_run(run).score == pytest.approx(expected_score)


def test_never_recovered_is_capped_at_25() -> None:
    # recovery 0, the rest perfect: 90 -> capped at 25
    run = make_run(recovery_time=None)
    result = score_run(run)
    assert sub(run, "recovery") == 0.0
    assert result.score == pytest.approx(25.0)
    assert result.status is Status.FRAGILE
    assert result.cap is not None and "never recovered" in result.cap


# -- evidence rows, outcomes -------------------------------------------------------------------------------


def test_budget_and_deviation_are_evidence_without_weight() -> None:
    run = make_run(error_budget=ErrorBudget(slo_target=0.999, burned=0.025),
                   checks=[error_rate(during=[0.01, 0.03, 0.01])])
    result = score_run(run)
    rows = {s.name: s for s in result.subscores}
    assert rows["budget"].value == pytest.approx(0.5) and rows["budget"].weight is None
    assert rows["budget"].why == "burned 2.50 % of the 99.9 % SLO budget (0 at 5 %)"
    assert rows["deviation"].value == pytest.approx(0.5) and rows["deviation"].weight is None
    assert result.score == pytest.approx(100.0)


def test_normalised_deviation_edges() -> None:
    band = Tolerance(min=0.0, max=10.0)
    assert normalised_deviation(5.0, 5.0, band) == 0.0
    assert normalised_deviation(7.5, 5.0, band) == pytest.approx(0.5)
    assert normalised_deviation(2.5, 5.0, band) == pytest.approx(0.5)
    assert normalised_deviation(float("inf"), 5.0, band) == 1.0
    assert normalised_deviation(-100.0, 5.0, Tolerance(max=10.0)) == 0.0
    assert normalised_deviation(10.5, 10.0, Tolerance(max=10.0)) == 1.0


@pytest.mark.parametrize("outcome", [Outcome.REFUSED, Outcome.FAILED])
def test_runs_without_a_judged_fault_are_not_scored(outcome: Outcome) -> None:
    result = score_run(make_run(outcome=outcome))
    assert result.score is None
    assert result.status is Status.UNSCORED


def test_a_breached_run_is_scored_from_its_evidence() -> None:
    run = make_run(outcome=Outcome.BREACHED, checks=[error_rate(during=BROKEN)])
    assert score_run(run).score == pytest.approx(70.0)


# -- a team's weights --------------------------------------------------------------------------------------


def test_other_weights_from_a_scoring_config(tmp_path: object) -> None:
    config = parse_config(
        "weights:\n  detection: 0\n  autoRecovery: 0.5\n  containment: 0.1\n  customerImpact: 0.3\n"
        "  recoveryTime: 0.1\nhalfLife: 28d\n",
        "scoring.yaml",
    )
    assert config.half_life == timedelta(days=28)
    run = make_run(checks=[error_rate(during=BROKEN)], detection_time=None)
    # detection weighs nothing now; auto-recovery 0 at 0.5 -> 50
    assert score_run(run, config).score == pytest.approx(50.0)
    assert score_run(run).score == pytest.approx(50.0)  # defaults: 100 - 30 - 20


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("weights:\n  detection: 0.5\n  autoRecovery: 0.3\n", "scoring.yaml:1: weights: weights must sum to 1"),
        ("\nweights:\n  detection: -0.1\n  autoRecovery: 0.5\n  containment: 0.3\n  customerImpact: 0.2\n"
         "  recoveryTime: 0.1\n", "scoring.yaml:3: weights.detection: Input should be greater than or equal to 0"),
        ("weights:\n  speed: 1\n", "scoring.yaml:2: weights.speed: unknown field"),
        ("halfLife: soon\n", "scoring.yaml:1: halfLife:"),
    ],
)
def test_bad_scoring_config_is_file_line_errors(text: str, error: str) -> None:
    with pytest.raises(SpecError) as bad:
        parse_config(text, "scoring.yaml")
    assert bad.value.exit_code == 2
    assert bad.value.problems[0].startswith(error), bad.value.problems


def test_weights_default_and_missing_config_file(tmp_path: object) -> None:
    assert Weights().of("auto-recovery") == 0.3
    with pytest.raises(SpecError, match=r"nope.yaml:0: \(file\): no such file"):
        load_config("nope.yaml")


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
        recovery_time=timedelta(seconds=180),  # 90
        detection_time=None,  # 90 - 20 = 70
        impact=CustomerImpact(failed_share=0.1, samples=3),  # 70 - 20 = 50
        checks=[error_rate(during=BROKEN)],  # 50 - 30 = 20
    )
    assert score_run(old).score == pytest.approx(20.0)
    # weights 1 and 0.5: (1 * 100 + 0.5 * 20) / 1.5 = 110 / 1.5 = 73.33
    result = score_service("shop/checkout", [fresh, old], NOW)
    assert result.score == pytest.approx(110 / 1.5)
    assert result.status is Status.DEGRADED
    assert [e.weight for e in result.experiments] == [pytest.approx(1.0), pytest.approx(0.5)]


def test_stale_evidence_alone_scales_the_score_down() -> None:
    # one run of 70 ended 14 days ago: weight 0.5 < 1 needed -> 0.5 * 70 / 1 = 35
    run = make_run(ended_at=NOW - timedelta(days=14), checks=[error_rate(during=BROKEN)])
    result = score_service("shop/checkout", [run], NOW)
    assert result.score == pytest.approx(35.0)
    assert result.evidence == pytest.approx(0.5)


def test_identical_runs_carry_no_repeatability_penalty() -> None:
    runs = [
        make_run(run_id=f"r{i}", ended_at=NOW - timedelta(hours=i), checks=[error_rate(during=BROKEN)])
        for i in range(3)
    ]
    result = score_service("shop/checkout", runs, NOW)
    assert result.experiments[0].stddev == pytest.approx(0.0)
    assert result.score == pytest.approx(70.0)


def test_divergent_runs_are_penalised_by_one_standard_deviation() -> None:
    good = make_run(run_id="good")  # 100
    bad = make_run(run_id="bad", checks=[error_rate(during=BROKEN)])  # 70
    # same age: mean 85, population sd 15 -> 85 - 15 = 70
    result = score_service("shop/checkout", [good, bad], NOW)
    experiment = result.experiments[0]
    assert experiment.mean == pytest.approx(85.0)
    assert experiment.stddev == pytest.approx(15.0)
    assert result.score == pytest.approx(70.0)
    assert score_service("shop/checkout", [good, bad], NOW, ScoringConfig(repeatability_k=0)).score == (
        pytest.approx(85.0)
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
    duringss = [BROKEN] * 3 + [[0.01]] * 3  # three runs at 70 then three at 100
    runs = [
        make_run(run_id=f"r{i}", ended_at=NOW - timedelta(days=6 - i), checks=[error_rate(during=d)])
        for i, d in enumerate(duringss)
    ]
    result = score_service("shop/checkout", runs, NOW)
    assert [p.score for p in result.trend] == pytest.approx([70, 70, 70, 100, 100, 100])
    assert result.direction == "improving"
    assert score_service("shop/checkout", list(reversed(runs))[:1], NOW).direction == "too few runs"


def test_the_formula_is_deterministic() -> None:
    runs = [make_run(run_id="x", checks=[error_rate(during=[0.02, math.nan])]), make_run(run_id="y")]
    first = score_service("shop/checkout", runs, NOW).model_dump_json()
    assert score_service("shop/checkout", list(reversed(runs)), NOW).model_dump_json() == first


# -- coverage: never claim more than was measured ----------------------------------------------------------

UNDETECTED_UNMEASURED = {"detection_objective": None, "detection_time": None, "impact": None}
"""The demo's first pod kill: every check held (nothing to detect) and no impact queries declared."""


def test_a_run_states_its_coverage_and_the_range_the_rest_leaves_open() -> None:
    # detection (0.2) and impact (0.2) unmeasured, the rest scores 1: measured 0.6 of the weight.
    # low: the unmeasured at 0 -> 60; high: at 1 -> 100; the score shares their weight -> 100.
    result = score_run(make_run(**UNDETECTED_UNMEASURED))
    assert result.score == pytest.approx(100.0)
    assert result.coverage == pytest.approx(0.6)
    assert (result.low, result.high) == pytest.approx((60.0, 100.0))
    assert result.status is Status.NOT_ENOUGH_EVIDENCE
    full = score_run(make_run())
    assert (full.coverage, full.low, full.high) == pytest.approx((1.0, 100.0, 100.0))
    assert full.status is Status.RESILIENT


def test_the_range_holds_the_score_and_what_was_measured() -> None:
    # detection late (0.75) and impact unmeasured: measured 0.2*0.75 + 0.3 + 0.2 + 0.1 = 0.75 of 0.8
    # -> score 0.75 / 0.8 = 93.75, low 75, high 75 + 20 = 95; 80 % measured is enough for a status word
    result = score_run(make_run(impact=None, detection_time=timedelta(seconds=90)))
    assert result.score == pytest.approx(93.75)
    assert (result.low, result.high) == pytest.approx((75.0, 95.0))
    assert result.coverage == pytest.approx(0.8)
    assert result.status is Status.RESILIENT


@pytest.mark.parametrize(
    ("min_coverage", "impact_missing", "both_missing"),
    [
        (0.8, Status.RESILIENT, Status.NOT_ENOUGH_EVIDENCE),  # the default: 80 % is at the threshold
        (0.6, Status.RESILIENT, Status.RESILIENT),
        (1.0, Status.NOT_ENOUGH_EVIDENCE, Status.NOT_ENOUGH_EVIDENCE),
        (0.0, Status.RESILIENT, Status.RESILIENT),
    ],
)
def test_the_status_word_needs_the_teams_coverage(
    min_coverage: float, impact_missing: Status, both_missing: Status
) -> None:
    config = ScoringConfig(min_coverage=min_coverage)
    assert score_run(make_run(impact=None), config).status is impact_missing
    assert score_run(make_run(**UNDETECTED_UNMEASURED), config).status is both_missing


def test_coverage_counts_a_teams_weights() -> None:
    # impact weighs 0.5 for this team: without it half the weight is measured
    config = parse_config(
        "weights:\n  detection: 0.1\n  autoRecovery: 0.2\n  containment: 0.1\n  customerImpact: 0.5\n"
        "  recoveryTime: 0.1\nminCoverage: 0.5\n",
        "scoring.yaml",
    )
    result = score_run(make_run(impact=None), config)
    assert result.coverage == pytest.approx(0.5)
    assert (result.low, result.high) == pytest.approx((50.0, 100.0))
    assert result.status is Status.RESILIENT  # 50 % is this team's threshold


def test_gates_bound_both_ends_of_the_range() -> None:
    # never recovered with detection and impact unmeasured: 0.5 of 0.6 -> 83.3, capped at 25; so are both ends
    capped = score_run(make_run(recovery_time=None, **UNDETECTED_UNMEASURED))
    assert capped.score == pytest.approx(25.0)
    assert (capped.low, capped.high) == pytest.approx((25.0, 25.0))
    assert capped.status is Status.NOT_ENOUGH_EVIDENCE
    # an escaped radius is measured and scores 0 whatever the rest: the gate's word stands
    escaped = score_run(make_run(blast_radius=BlastRadius(allowed=["a"], touched=["b"]), **UNDETECTED_UNMEASURED))
    assert (escaped.score, escaped.low, escaped.high) == (0.0, 0.0, 0.0)
    assert escaped.status is Status.ESCAPED


def test_an_unscored_run_measured_nothing() -> None:
    result = score_run(make_run(outcome=Outcome.REFUSED))
    assert (result.coverage, result.low, result.high) == (0.0, None, None)


@pytest.mark.parametrize("value", ["1.5", "-0.1", ".nan"])
def test_min_coverage_is_a_share(value: str) -> None:
    with pytest.raises(SpecError) as bad:
        parse_config(f"halfLife: 14d\nminCoverage: {value}\n", "scoring.yaml")
    assert bad.value.problems[0].startswith("scoring.yaml:2: minCoverage:"), bad.value.problems


def test_service_coverage_is_weighted_as_its_runs_weigh() -> None:
    # pod-kill: a fresh run at 100 % and one 14 days old at 60 % -> (1 * 1.0 + 0.5 * 0.6) / 1.5 = 0.8667, W = 1
    # scale-down: one run 14 days old at 80 % (impact unmeasured) -> W = 0.5
    # service: (1 * 0.8667 + 0.5 * 0.8) / 1.5 = 0.8444
    runs = [
        make_run(run_id="a"),
        make_run(run_id="b", ended_at=NOW - timedelta(days=14), **UNDETECTED_UNMEASURED),
        make_run(run_id="c", experiment="scale-down", ended_at=NOW - timedelta(days=14), impact=None),
    ]
    result = score_service("shop/checkout", runs, NOW)
    by_name = {e.experiment: e for e in result.experiments}
    assert by_name["pod-kill"].coverage == pytest.approx(1.3 / 1.5)
    assert by_name["scale-down"].coverage == pytest.approx(0.8)
    assert result.coverage == pytest.approx((1.3 / 1.5 + 0.4) / 1.5)
    assert result.status is Status.RESILIENT
    # the same runs with only the under-measured one fresh: it now weighs most
    thin = score_service("shop/checkout", [make_run(run_id="b", **UNDETECTED_UNMEASURED)], NOW)
    assert thin.score == pytest.approx(100.0)
    assert thin.coverage == pytest.approx(0.6)
    assert thin.status is Status.NOT_ENOUGH_EVIDENCE


def test_a_service_without_scored_runs_has_no_coverage() -> None:
    result = score_service("shop/checkout", [make_run(outcome=Outcome.FAILED)], NOW)
    assert (result.coverage, result.status) == (0.0, Status.UNSCORED)
