"""A team's scoring config: every number finite and within the formula's sense, or exit 2 at its line."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.scoring.config import load_config, parse_config
from orchestrator.scoring.formula import ScoringConfig, score_service
from tests.frontdoor.helpers import assert_one_line, invoke
from tests.scoring import T0, make_run

ABSURD = [
    ("resilientAt: .nan\n", "resilientAt"),
    ("resilientAt: .inf\n", "resilientAt"),
    ("degradedAt: -.inf\n", "degradedAt"),
    ("resilientAt: 1000\n", "resilientAt"),
    ("degradedAt: -5\n", "degradedAt"),
    ("resilientAt: 40\ndegradedAt: 60\n", "(document)"),
    ("trendWindow: 100000000000000000000\n", "trendWindow"),
    ("trendWindow: 1e20\n", "trendWindow"),
    ("trendEpsilon: .nan\n", "trendEpsilon"),
    ("trendEpsilon: 1e308\n", "trendEpsilon"),
    ("recoveryZeroAt: .inf\n", "recoveryZeroAt"),
    ("detectionZeroAt: 1e300\n", "detectionZeroAt"),
    ("repeatabilityK: .inf\n", "repeatabilityK"),
    ("evidenceTarget: .nan\n", "evidenceTarget"),
    ("evidenceTarget: 1e300\n", "evidenceTarget"),
    ("budgetMaxBurn: 5\n", "budgetMaxBurn"),
    ("weights:\n  detection: .nan\n  autoRecovery: 0.3\n  containment: 0.2\n  customerImpact: 0.2\n"
     "  recoveryTime: 0.1\n", "weights.detection"),
    ("weights:\n  detection: .inf\n  autoRecovery: -.inf\n  containment: 0.2\n  customerImpact: 0.2\n"
     "  recoveryTime: 0.1\n", "weights.detection"),
]


@pytest.mark.parametrize(("text", "field"), ABSURD, ids=[t.split("\n")[0] for t, _ in ABSURD])
def test_non_finite_and_absurd_values_are_refused_at_their_field(text: str, field: str) -> None:
    with pytest.raises(SpecError) as bad:
        parse_config(text, "scoring.yaml")
    assert bad.value.exit_code == 2
    assert bad.value.problems[0].startswith("scoring.yaml:"), bad.value.problems
    assert f": {field}: " in bad.value.problems[0], bad.value.problems


def test_sensible_values_still_load() -> None:
    config = parse_config("resilientAt: 90\ndegradedAt: 60\ntrendWindow: 10\ntrendEpsilon: 2.5\n", "scoring.yaml")
    assert (config.resilient_at, config.degraded_at, config.trend_window) == (90.0, 60.0, 10)
    assert ScoringConfig() == parse_config("{}\n", "scoring.yaml")


def test_the_cli_answers_a_nan_config_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "scoring.yaml"
    path.write_text("trendWindow: 3\nresilientAt: .nan\n")
    outcome = invoke(["score", "--config", str(path), "--db", str(tmp_path / "runs.db")])
    assert_one_line(outcome, 2, rf"^{path}:2: resilientAt: ")
    outcome = invoke(["score", "--db", str(tmp_path / "runs.db")], env={"ORCHESTRATOR_SCORING_CONFIG": str(path)})
    assert_one_line(outcome, 2, rf"^{path}:2: resilientAt: ")


def test_a_missing_config_file_is_exit_2_naming_it() -> None:
    with pytest.raises(SpecError, match=r"^nope.yaml:0: \(file\): no such file$"):
        load_config("nope.yaml")


def test_a_half_life_under_an_hour_is_refused() -> None:
    for written in ("1", "1s", "59m"):
        with pytest.raises(SpecError, match=r"^scoring.yaml:1: \(document\): halfLife must be at least 1h"):
            parse_config(f"halfLife: {written}\n", "scoring.yaml")
    assert parse_config("halfLife: 1h\n", "scoring.yaml").half_life == timedelta(hours=1)


def test_runs_whose_freshness_underflows_weigh_nothing_instead_of_dividing_by_zero() -> None:
    # 2^(-age / half-life) is 0.0 in floating point past about 1075 half-lives: 45 days at 1h.
    config = ScoringConfig(half_life=timedelta(hours=1))
    runs = [make_run(run_id=f"r{i}", ended_at=T0 + timedelta(days=i, seconds=90)) for i in range(3)]
    service = score_service("shop/checkout", runs, T0 + timedelta(days=100), config)
    assert service.score == 0.0
    assert all(e.weight == 0.0 and e.mean == pytest.approx(100.0) for e in service.experiments)
