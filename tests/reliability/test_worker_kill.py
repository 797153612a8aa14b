"""A worker SIGKILLed at an activity boundary: a new worker resumes the rollout and applies no step twice.

One boundary per activity kind here (the loop over every boundary index is ``benchmarks/reliability.py``).
The boundary is read from the workflow history: the worker dies the moment the N-th activity of a kind
is recorded as completed (its result is in history, the next command may not be) or as scheduled (the
activity may be running, or its effect may have landed unreported).
"""

from __future__ import annotations

import pytest

from tests.reliability.runs import Stage, worker_killed_at

pytestmark = pytest.mark.timeout(300)

# A representative slice for the suite's time budget: the start, a weight change in flight, a watch of looks,
# promotion's template write and its traffic reset. ``benchmarks/reliability.py`` runs every boundary.
BOUNDARIES = [
    ("completed", "canary.snapshot_stable", 1),
    ("scheduled", "canary.set_weight", 2),
    ("scheduled", "watch.checks", 1),  # a watch in flight: the next worker resumes it from its heartbeat
    ("completed", "canary.update_stable", 1),
    ("completed", "canary.reset_traffic", 1),
]


@pytest.mark.parametrize(("what", "activity", "n"), BOUNDARIES, ids=[f"{w}-{a}-{n}" for w, a, n in BOUNDARIES])
async def test_a_worker_killed_at_a_boundary_is_replaced_and_no_step_runs_twice(
    what: str, activity: str, n: int, stage: Stage,
) -> None:
    ran = await worker_killed_at(stage, what, activity, n)
    assert ran.faults == 1
    assert ran.outcome.ok, ran.outcome.problems
