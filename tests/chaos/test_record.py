"""``build_record``'s mapping of a finished run to the scoring record: error budget burn and detection.

The workflow's status is built by hand here so each branch is pinned to numbers worked out in the
test; the workflow suite shows the same mapping fed by a real run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.api.chaos import ChaosPhase, ChaosStatus, RunRecordRequest
from orchestrator.chaos.models import BudgetReading
from orchestrator.chaos.record import build_record, wants_budget_after
from orchestrator.chaos.safety import read_error_budget
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.scoring.formula import score_run
from orchestrator.scoring.model import ErrorBudget, RunRecord
from orchestrator.specs.chaos import ChaosExperiment
from tests.chaos.conftest import experiment

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
INJECTED = T0 + timedelta(seconds=2)
QUERY = 'slo:error_budget_remaining:ratio{namespace="prod",app="web"}'


def _budget(slo_target: float | None = 0.999, **extra: Any) -> dict[str, Any]:
    budget: dict[str, Any] = {"query": QUERY, "floor": 0.25, **extra}
    if slo_target is not None:
        budget["sloTarget"] = slo_target
    return {"errorBudget": budget}


def _reading(remaining: float | None, message: str = "") -> BudgetReading:
    return BudgetReading(query=QUERY, remaining=remaining, at=T0, message=message)


def _request(
    exp: ChaosExperiment,
    *,
    before: BudgetReading | None = None,
    injected: bool = True,
    breach_after: timedelta | None = None,
    phase: ChaosPhase = ChaosPhase.COMPLETED,
) -> RunRecordRequest:
    status = ChaosStatus(
        name=exp.metadata.name, namespace="prod", workflow_id="chaos-prod-exp", run="exp-1", fault="pod-kill",
        phase=phase, reason="the steady state held and recovered", candidates=["p1", "p2", "p3", "p4"],
        touched=["p1"] if injected else [], recovered=injected or None, started_at=T0,
        injected_at=INJECTED if injected else None,
        first_breach_at=INJECTED + breach_after if breach_after is not None else None,
        reverted_at=T0 + timedelta(seconds=32) if injected else None,
        recovered_at=T0 + timedelta(seconds=40) if injected else None,
        finished_at=T0 + timedelta(seconds=41), budget_before=before,
    )
    return RunRecordRequest(experiment=exp, status=status, measurements=[])


def _sub(run: RunRecord, name: str) -> float | None:
    return next(s.value for s in score_run(run).subscores if s.name == name)


def test_declared_budget_records_the_burn_and_its_sub_score() -> None:
    exp = experiment("prod", {"type": "pod-kill"}, safety=_budget())
    req = _request(exp, before=_reading(0.9))
    assert wants_budget_after(req)
    run = build_record(req, budget_after=_reading(0.88))
    # 0.9 of the budget left before, 0.88 after: 2 % of the whole budget burned; 1 - 0.02 / 0.05 = 0.6.
    assert run.error_budget is not None and run.error_budget.slo_target == 0.999
    assert run.error_budget.burned == pytest.approx(0.02)
    assert _sub(run, "budget") == pytest.approx(0.6)
    assert "error budget remaining 0.9 before injection, 0.88 after the recovery window" in run.message


def test_budget_that_grew_back_burned_nothing() -> None:
    exp = experiment("prod", {"type": "pod-kill"}, safety=_budget(0.99))
    run = build_record(_request(exp, before=_reading(0.5)), budget_after=_reading(0.6))
    assert run.error_budget == ErrorBudget(slo_target=0.99, burned=0.0)
    assert _sub(run, "budget") == 1.0


def test_the_plan_reading_stands_in_when_the_status_has_none() -> None:
    # Status and plan both carry the rail's reading; a status without it (an older history) falls back.
    from orchestrator.chaos.models import Plan, TargetSet

    exp = experiment("prod", {"type": "pod-kill"}, safety=_budget())
    req = _request(exp)
    req.plan = Plan(run="exp-1", fault="pod-kill", entries=[], affected_pods=1, total_pods=4,
                    targets=TargetSet(namespace="prod", selector={"app": "web"}, candidates=[], chosen=[],
                                      deployments=[], seed=1),
                    budget=_reading(0.75))
    run = build_record(req, budget_after=_reading(0.74))
    assert run.error_budget is not None and run.error_budget.burned == pytest.approx(0.01)


@pytest.mark.parametrize(("before", "after", "said"), [
    (_reading(None, "the error budget query returned no data: q"), _reading(0.8),
     "error budget burn not measured: no data before injection (the error budget query returned no data: q)"),
    (_reading(0.9), _reading(None, "the error budget query returned no data: q"),
     "error budget burn not measured: no data after the recovery window "
     "(the error budget query returned no data: q)"),
    (_reading(0.9), None, "no data after the recovery window (it was not read after the run)"),
    (None, _reading(0.8), "no data before injection (it was not read before injection)"),
])
def test_no_data_at_either_end_gives_no_figure_and_says_why(
    before: BudgetReading | None, after: BudgetReading | None, said: str
) -> None:
    exp = experiment("prod", {"type": "pod-kill"}, safety=_budget(noData="pass"))
    run = build_record(_request(exp, before=before), budget_after=after)
    assert run.error_budget is None
    assert said in run.message
    assert run.message.startswith("the steady state held and recovered; ")
    assert _sub(run, "budget") is None  # not applicable: its weight goes to the other terms


def test_a_budget_without_slo_target_is_only_a_precondition() -> None:
    exp = experiment("prod", {"type": "pod-kill"}, safety=_budget(slo_target=None))
    req = _request(exp, before=_reading(0.9))
    assert not wants_budget_after(req)
    run = build_record(req, budget_after=_reading(0.1))
    assert run.error_budget is None and "budget" not in run.message


def test_a_run_that_injected_nothing_has_no_burn() -> None:
    exp = experiment("prod", {"type": "pod-kill"}, safety=_budget())
    req = _request(exp, before=_reading(0.9), injected=False, phase=ChaosPhase.REFUSED)
    assert not wants_budget_after(req)
    assert build_record(req, budget_after=_reading(0.5)).error_budget is None


@pytest.mark.parametrize(("breach_after", "expected"), [
    (timedelta(seconds=12), 1.0),  # within the 30 s objective
    (timedelta(seconds=60), 0.5),  # 2 x objective: 1 - (2 - 1) / (3 - 1)
    (timedelta(seconds=90), 0.0),  # 3 x objective and beyond
])
def test_detect_within_is_the_detection_objective(breach_after: timedelta, expected: float) -> None:
    exp = experiment("prod", {"type": "pod-kill"}, detect_within="30s")
    run = build_record(_request(exp, breach_after=breach_after, phase=ChaosPhase.BREACHED))
    assert run.detection_objective == timedelta(seconds=30)
    assert run.detection_time == breach_after
    assert _sub(run, "detection") == pytest.approx(expected)


def test_nothing_to_detect_leaves_the_detection_term_out() -> None:
    exp = experiment("prod", {"type": "pod-kill"}, detect_within="30s")
    run = build_record(_request(exp))
    assert run.detection_time is None and run.detection_objective is None
    assert _sub(run, "detection") is None
    assert "detection not scored: every check held through the fault" in run.message


def test_without_detect_within_there_is_no_objective() -> None:
    exp = experiment("prod", {"type": "pod-kill"})
    run = build_record(_request(exp, breach_after=timedelta(seconds=5), phase=ChaosPhase.BREACHED))
    assert run.detection_time == timedelta(seconds=5) and run.detection_objective is None
    assert _sub(run, "detection") is None and "detection" not in run.message


@pytest.mark.parametrize(("steady", "safety", "field"), [
    ({"detectWithin": "0s"}, {}, "detectWithin"),
    ({"detectWithin": "soon"}, {}, "detectWithin"),
    ({"recoverWithin": "0s"}, {}, "recoverWithin"),
    ({}, _budget(slo_target=1.0), "sloTarget"),
    ({}, _budget(slo_target=0.0), "sloTarget"),
    ({}, _budget(sloTaget=0.99), "sloTaget"),
])
def test_objectives_are_validated(steady: dict[str, Any], safety: dict[str, Any], field: str) -> None:
    doc = experiment("prod", {"type": "pod-kill"}).model_dump(mode="json", by_alias=True, exclude_defaults=True)
    doc["spec"]["steadyState"].update(steady)
    doc["spec"]["safety"] = safety
    with pytest.raises(ValueError, match=field):
        ChaosExperiment.model_validate(doc)


def test_a_budget_read_from_prometheus(metrics: PrometheusProvider) -> None:
    budget = experiment("prod", {"type": "pod-kill"}, safety={"errorBudget": {
        "query": 'chaos_test:error_budget_remaining{service="high"}', "floor": 0.25}}).spec.safety.error_budget
    assert budget is not None
    assert read_error_budget(metrics, budget, {}).remaining == pytest.approx(0.9)
    none = budget.model_copy(update={"query": 'chaos_test:error_budget_remaining{service="{{app}}"}'})
    reading = read_error_budget(metrics, none, {"app": "nothing-here"})
    assert reading.remaining is None
    assert reading.message == ('the error budget query returned no data: '
                               'chaos_test:error_budget_remaining{service="nothing-here"}')
