"""The watch's fold (``orchestrator/gates/watch_fold.py``): pure, so each rule is one small example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orchestrator.gates.judge import JudgeLookResult, JudgeState, JudgeVerdict, Outcome
from orchestrator.gates.model import CheckPhase, Measurement, Phase, Sample
from orchestrator.gates.watch_fold import Batch, End, WatchSpec, WatchState, bounded, due, fold
from orchestrator.specs.checks import Check

T0 = datetime(2026, 1, 1, tzinfo=UTC)
pytestmark = pytest.mark.timeout(30)


def check(name: str = "errors", **extra: Any) -> Check:
    return Check.model_validate({"name": name, "query": "q", "condition": {"max": 0.01}, "interval": "10s",
                                 **extra})


def judged(name: str = "judged") -> Check:
    return Check.model_validate({"name": name, "interval": "10s", "judge": {
        "errors": 'sum by (pod) (x{ {{track_selector}},code="500"})',
        "requests": 'sum by (pod) (x{ {{track_selector}} })', "maxFalseRollback": "1%"}})


def m(name: str, phase: Phase = Phase.SUCCESSFUL, at: datetime = T0, *, no_data: bool = False) -> Measurement:
    return Measurement(check=name, phase=phase, query="q", message=str(phase), at=at, no_data=no_data)


def look(spec: WatchSpec, state: WatchState, at: datetime, **looks: Any) -> tuple[WatchState, End | None]:
    return fold(spec, state, Batch(at=at, looks=looks, scheduled=due(spec, state)))


def test_counters_next_look_and_a_pass_when_every_check_reached_its_count() -> None:
    spec = WatchSpec(checks=[check(count=2)], started=T0, until=T0 + timedelta(minutes=5))
    state, end = look(spec, WatchState(), T0, errors=m("errors"))
    assert end is None and state.checks["errors"].successes == 1
    assert due(spec, state)["errors"] == T0 + timedelta(seconds=10)
    # A late look moves the next one an interval from now: looks are skipped, never bunched.
    state, end = look(spec, state, T0 + timedelta(seconds=25), errors=m("errors"))
    assert end is End.PASSED and state.checks["errors"].phase is CheckPhase.SUCCESSFUL and state.looks == 2


def test_a_failure_past_its_limit_decides_at_once() -> None:
    spec = WatchSpec(checks=[check(), check("latency")], started=T0, until=T0 + timedelta(minutes=5))
    state, end = look(spec, WatchState(), T0, errors=m("errors", Phase.FAILED), latency=m("latency"))
    assert end is End.DECIDED and state.checks["errors"].phase is CheckPhase.FAILED


def test_waiting_for_data_is_not_a_look_and_does_not_make_a_check_fresh() -> None:
    spec = WatchSpec(checks=[check(waitForData="1m")], started=T0, data_since=T0)
    state, _ = look(spec, WatchState(), T0, errors=m("errors", Phase.FAILED, no_data=True))
    assert state.checks["errors"].measurements == 0 and "errors" not in state.fresh
    later = T0 + timedelta(minutes=2)
    state, end = look(spec, state, later, errors=m("errors", Phase.FAILED, later, no_data=True))
    assert end is End.DECIDED  # past waitForData, noData: fail applies


def test_the_end_of_the_step_decides_what_is_open_and_never_promotes_without_a_success() -> None:
    spec = WatchSpec(checks=[check(), check("latency")], started=T0, until=T0 + timedelta(seconds=30))
    state, _ = look(spec, WatchState(), T0, errors=m("errors"))
    state, end = fold(spec, state, Batch(at=T0 + timedelta(seconds=30), ended=True))
    assert end is End.DECIDED  # latency was never measured: inconclusive, not successful
    assert state.checks["errors"].phase is CheckPhase.SUCCESSFUL
    assert state.checks["latency"].phase is CheckPhase.INCONCLUSIVE


def test_a_hold_keeps_the_step_until_its_end() -> None:
    spec = WatchSpec(checks=[check(count=1)], started=T0, until=T0 + timedelta(minutes=1), hold=True)
    state, end = look(spec, WatchState(), T0, errors=m("errors"))
    assert end is None and state.checks["errors"].phase is CheckPhase.SUCCESSFUL
    assert due(spec, state) == {}
    _, end = fold(spec, state, Batch(at=T0 + timedelta(minutes=1), ended=True))
    assert end is End.ENDED


def test_a_background_success_is_never_final_and_a_look_against_the_release_returns() -> None:
    spec = WatchSpec(checks=[check(count=1, failureLimit=3)], started=T0, background=True)
    state, end = look(spec, WatchState(), T0, errors=m("errors"))
    # The first verdict is news for the decision core; the same verdict again is not.
    assert end is End.CHANGED and state.checks["errors"].phase is CheckPhase.SUCCESSFUL
    assert "errors" in due(spec, state)
    state, end = look(spec, state, T0 + timedelta(seconds=5), errors=m("errors"))
    assert end is None
    t = T0 + timedelta(seconds=10)
    state, end = look(spec, state, t, errors=m("errors", Phase.FAILED, t))
    # Below the limit, but a restart could not recompute it: the watch returns it (rule 5).
    assert end is End.CHANGED and state.checks["errors"].failures == 1


def test_a_background_watch_returns_once_every_check_was_looked_at_since_the_weight_changed() -> None:
    changed = T0 + timedelta(seconds=5)
    spec = WatchSpec(checks=[check(), check("latency", interval="20s")], started=T0, background=True,
                     fresh_after=changed)
    state, end = look(spec, WatchState(), T0, errors=m("errors"), latency=m("latency"))
    assert end is End.CHANGED  # the first verdicts, looked at before the change: not fresh
    t = T0 + timedelta(seconds=10)
    state, end = look(spec, state, t, errors=m("errors", at=t))
    assert end is None
    t = T0 + timedelta(seconds=20)
    state, end = look(spec, state, t, errors=m("errors", at=t), latency=m("latency", at=t))
    assert end is End.FRESH
    t = T0 + timedelta(seconds=30)
    state, end = look(spec, state, t, errors=m("errors", at=t))
    assert end is None  # fresh already: it does not return again


def test_a_judge_look_keeps_its_state_and_the_end_asks_the_judge() -> None:
    spec = WatchSpec(checks=[judged()], started=T0, until=T0 + timedelta(minutes=1))
    verdict = JudgeVerdict(check="judged", outcome=Outcome.RUNNING, reason="collecting", message="collecting",
                           alpha=0.01)
    result = JudgeLookResult(state=JudgeState(looks=1, started_at=T0), verdict=verdict,
                             measurement=m("judged", Phase.INCONCLUSIVE))
    state, end = look(spec, WatchState(), T0, judged=result)
    assert end is None and state.judges["judged"].looks == 1 and state.checks["judged"].inconclusive == 0
    state, end = fold(spec, state, Batch(at=T0 + timedelta(minutes=1), ended=True))
    assert end is End.DECIDED and state.checks["judged"].outcome == "not enough traffic"


def test_the_state_stays_bounded() -> None:
    many = [Sample(labels={"pod": f"p{i}"}, value=0.0) for i in range(2000)]
    spec = WatchSpec(checks=[check(failureLimit=100)], started=T0)
    state = WatchState()
    for i in range(12):
        at = T0 + timedelta(seconds=10 * i)
        state, _ = look(spec, state, at, errors=m("errors", at=at).model_copy(update={"values": many}))
    assert len(bounded(state).model_dump_json()) < 256_000 < len(state.model_dump_json())
    assert bounded(state).checks["errors"].successes == 12
