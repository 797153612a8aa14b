"""The parts around the worker fail: Temporal restarts, Prometheus dies, one worker of two dies, the
Kubernetes API answers error storms or goes away during a rollback.

Each test owns the part it kills (its own Temporal dev server on a database file, its own Prometheus
over a copy of the fixture's TSDB blocks, its own proxy in front of the API server), so a kill never
disturbs a neighbouring test.
"""

from __future__ import annotations

import pytest

from tests.reliability import chaos_runs, runs
from tests.reliability.runs import Stage

pytestmark = pytest.mark.timeout(300)


async def test_the_temporal_server_killed_mid_rollout_comes_back_from_its_database_and_the_rollout_promotes(
    stage: Stage,
) -> None:
    ran = await runs.temporal_restarted(stage)
    assert ran.faults == 1
    assert ran.outcome.ok, ran.outcome.problems


async def test_prometheus_down_beyond_the_error_budget_is_an_error_verdict_and_never_promotes(stage: Stage) -> None:
    ran = await runs.prometheus_down(stage, back_after=None, error_limit=1)
    assert ran.outcome.ok, ran.outcome.problems


async def test_prometheus_back_within_the_error_budget_lets_the_rollout_promote(stage: Stage) -> None:
    ran = await runs.prometheus_down(stage, back_after=2.0, error_limit=4)
    assert ran.outcome.ok, ran.outcome.problems


async def test_two_workers_one_killed_mid_step_the_other_finishes_the_rollout_once(stage: Stage) -> None:
    ran = await runs.two_workers_one_killed(stage)
    assert ran.faults == 1
    assert ran.outcome.ok, ran.outcome.problems


async def test_a_storm_of_500_409_and_429_answers_slows_the_rollout_but_it_promotes_once(stage: Stage) -> None:
    ran = await runs.api_storm(stage)
    # How many storm windows a rollout meets depends on how fast the machine runs it: at least one did.
    assert ran.faults >= 1, ran.faults
    assert ran.outcome.ok, ran.outcome.problems


async def test_an_api_outage_during_a_rollback_shows_rollback_stuck_and_the_rollback_lands_when_it_returns(
    stage: Stage,
) -> None:
    ran = await runs.api_down_in_rollback(stage)
    assert ran.outcome.ok, ran.outcome.problems


async def test_a_chaos_worker_killed_for_good_mid_fault_leaves_the_revert_to_the_janitor_at_expiry(
    stage: Stage,
) -> None:
    ran = await chaos_runs.chaos_worker_killed_for_good(stage)
    assert ran.faults == 1
    assert ran.outcome.ok, (ran.outcome.problems, ran.detail)


async def test_the_temporal_server_killed_mid_fault_comes_back_and_the_experiment_reverts_once(
    stage: Stage,
) -> None:
    ran = await chaos_runs.temporal_restarted_mid_fault(stage)
    assert ran.faults == 1
    assert ran.outcome.ok, ran.outcome.problems
