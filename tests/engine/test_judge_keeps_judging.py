"""A judge that said "successful" keeps judging (issue 17, defect 4), on the pure judge.

The rollout has one false-rollback bound: failure evidence accumulates over every look of every
weight. A success lets a step end early, but the next weight's success comes from its own looks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from orchestrator.gates.dispersion import INDEPENDENT
from orchestrator.gates.judge import JudgeLook, JudgeState, Outcome, Side, judge_update
from orchestrator.specs.checks import Check

CHECK = Check.model_validate({"name": "errors", "interval": "10s", "judge": {
    "errors": 'sum by (pod) (x{app="{{app}}",{{track_selector}},code="500"})',
    "requests": 'sum by (pod) (x{app="{{app}}",{{track_selector}}})', "maxFalseRollback": "1%"}})
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _looks(state: JudgeState, step_since: datetime, n: int, canary_errors: float, requests: float = 50000,
           control_errors: float = 250) -> tuple[JudgeState, list[Outcome]]:
    outcomes = []
    state = state.model_copy(update={"step_since": step_since})
    for i in range(n):
        at = step_since + timedelta(seconds=10 * (i + 1))
        look = JudgeLook(at=at, canary=Side(requests=requests, errors=canary_errors),
                         control=Side(requests=requests, errors=control_errors))
        state, verdict = judge_update(CHECK, state, look, alpha=0.01)
        outcomes.append(verdict.outcome)
    return state, outcomes


def _started() -> JudgeState:
    state, _ = judge_update(CHECK, JudgeState(), JudgeLook(at=T0, start=True, noise=INDEPENDENT), alpha=0.01)
    return state


def test_a_regression_after_a_success_is_still_caught() -> None:
    state, first = _looks(_started(), T0, 10, canary_errors=250)
    assert Outcome.SUCCESSFUL in first, "a clean first weight is promoted early"
    _, later = _looks(state, T0 + timedelta(minutes=10), 20, canary_errors=1250)
    assert Outcome.FAILED in later, "the 5x regression at the next weight is rolled back"


def test_success_at_a_later_weight_comes_from_its_own_looks() -> None:
    state, first = _looks(_started(), T0, 10, canary_errors=250)
    assert first[-1] is Outcome.SUCCESSFUL
    _, later = _looks(state, T0 + timedelta(minutes=10), 1, canary_errors=1, requests=200, control_errors=1)
    assert later == [Outcome.RUNNING], "one small look at the new weight proves nothing yet"
