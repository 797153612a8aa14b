"""decide(): the verdict over hand-built measurement lists (pure code, no Prometheus)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.gates import CheckPhase, CheckStatus, Measurement, Phase, Sample, decide
from orchestrator.specs.checks import Check

S, F, INC, E = Phase.SUCCESSFUL, Phase.FAILED, Phase.INCONCLUSIVE, Phase.ERROR
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def check(**overrides: Any) -> Check:
    spec: dict[str, Any] = {"name": "error-rate", "query": "up", "condition": {"max": 0.02}, **overrides}
    return Check.model_validate(spec)


def measurements(*phases: Phase) -> list[Measurement]:
    messages = {S: "0.005 <= max 0.02", F: "0.1012 > max 0.02", INC: "no data (noData: inconclusive)", E: "boom"}
    return [
        Measurement(
            check="error-rate",
            phase=p,
            value=None if p is E else 0.1012,
            query="up",
            message=messages[p],
            at=T0 + timedelta(seconds=30 * i),
        )
        for i, p in enumerate(phases)
    ]


@pytest.mark.parametrize(
    ("limit", "phases", "expected"),
    [
        (0, [F], CheckPhase.FAILED),
        (1, [F], CheckPhase.RUNNING),
        (1, [F, S], CheckPhase.RUNNING),
        (1, [F, S, F], CheckPhase.FAILED),
    ],
)
def test_failed_when_failures_exceed_the_limit(limit: int, phases: list[Phase], expected: CheckPhase) -> None:
    assert decide(check(failureLimit=limit), measurements(*phases), finished=False).phase is expected


def test_failure_reason_explains_value_and_limit() -> None:
    status = decide(check(failureLimit=1), measurements(F, F), finished=False)
    assert status.failures == 2
    assert status.reason == "error-rate failed: 0.1012 > max 0.02 (2 failures > limit 1)"


@pytest.mark.parametrize(
    ("limit", "phases", "expected"),
    [
        (0, [INC], CheckPhase.INCONCLUSIVE),
        (2, [INC, INC], CheckPhase.RUNNING),
        (2, [INC, INC, INC], CheckPhase.INCONCLUSIVE),
    ],
)
def test_inconclusive_when_inconclusive_exceed_the_limit(limit: int, phases: list[Phase], expected: CheckPhase) -> None:
    assert decide(check(inconclusiveLimit=limit), measurements(*phases), finished=False).phase is expected


def test_error_only_after_more_consecutive_errors_than_the_limit() -> None:
    c = check(consecutiveErrorLimit=2)
    assert decide(c, measurements(E, E), finished=False).phase is CheckPhase.RUNNING
    status = decide(c, measurements(E, E, E), finished=False)
    assert status.phase is CheckPhase.ERROR
    assert status.consecutive_errors == 3


def test_a_result_resets_the_consecutive_error_count() -> None:
    status = decide(check(consecutiveErrorLimit=2), measurements(E, E, S, E, E), finished=False)
    assert status.phase is CheckPhase.RUNNING
    assert (status.errors, status.consecutive_errors) == (4, 2)


def test_successful_once_count_results_are_taken_and_errors_do_not_count() -> None:
    c = check(count=3)
    assert decide(c, measurements(S, S), finished=False).phase is CheckPhase.RUNNING
    assert decide(c, measurements(S, E, S), finished=False).phase is CheckPhase.RUNNING
    assert decide(c, measurements(S, E, S, S), finished=False).phase is CheckPhase.SUCCESSFUL


def test_failures_within_the_limit_still_allow_success() -> None:
    status = decide(check(count=3, failureLimit=1), measurements(F, S, S), finished=False)
    assert status.phase is CheckPhase.SUCCESSFUL
    assert (status.successes, status.failures) == (2, 1)


def test_without_count_the_check_runs_until_the_step_ends() -> None:
    c = check()
    assert decide(c, measurements(S, S, S, S), finished=False).phase is CheckPhase.RUNNING
    assert decide(c, measurements(S, S, S, S), finished=True).phase is CheckPhase.SUCCESSFUL


def test_the_first_breach_is_final_even_if_later_measurements_pass() -> None:
    status = decide(check(count=3), measurements(F, S, S, S), finished=True)
    assert status.phase is CheckPhase.FAILED
    assert status.measurements == 1


@pytest.mark.parametrize(
    ("phases", "overrides"),
    [
        ([], {}),
        ([E, E], {}),
        ([INC], {"inconclusiveLimit": 1}),
        ([F], {"failureLimit": 1}),
        ([], {"noData": "pass"}),
    ],
)
def test_never_successful_without_a_successful_measurement(phases: list[Phase], overrides: dict[str, Any]) -> None:
    status = decide(check(**overrides), measurements(*phases), finished=True)
    assert status.phase is CheckPhase.INCONCLUSIVE


def test_running_before_any_measurement() -> None:
    status = decide(check(), [], finished=False)
    assert status.phase is CheckPhase.RUNNING
    assert status.last is None


def test_decide_is_deterministic_and_keeps_the_last_measurement() -> None:
    ms = measurements(S, F, S)
    first = decide(check(failureLimit=2), ms, finished=False)
    assert first == decide(check(failureLimit=2), ms, finished=False)
    assert first.last == ms[-1]


async def test_status_survives_the_temporal_converter_with_nan_values() -> None:
    # A 0/0 ratio must come back as NaN (no data), not as null or zero.
    m = measurements(F)[0].model_copy(
        update={"value": float("nan"), "values": [Sample(labels={"pod": "a"}, value=float("inf"))]}
    )
    status = decide(check(), [m], finished=False)
    payloads = await pydantic_data_converter.encode([status])
    (back,) = await pydantic_data_converter.decode(payloads, [CheckStatus])
    assert isinstance(back, CheckStatus)
    assert back.last is not None and back.last.value is not None
    assert back.last.value != back.last.value  # NaN
    assert back.last.values[0].value == float("inf")
    assert [r.value != r.value for r in back.recent] == [True]  # NaN in the bounded history too
    assert back.model_dump(exclude={"last", "recent"}) == status.model_dump(exclude={"last", "recent"})


def test_importing_gates_pulls_in_no_http_client() -> None:
    # Workflow code imports orchestrator.gates; the Temporal sandbox must not meet requests or the client.
    code = (
        "import sys, orchestrator.gates, orchestrator.gates.verdict, orchestrator.gates.model\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'urllib3', 'prometheus_api_client')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30)
    assert out.stdout.strip() == "[]"


def test_status_keeps_counters_for_every_measurement_but_only_the_last_few() -> None:
    from orchestrator.gates.verdict import RECENT

    many = measurements(*([S] * (RECENT * 5)))
    status = decide(check(), many, finished=False)
    assert status.measurements == status.successes == RECENT * 5
    assert len(status.recent) == RECENT and status.recent[-1] == many[-1]


def test_fold_step_by_step_equals_decide_over_the_list() -> None:
    from orchestrator.gates.verdict import advance, finish, start

    c = check(failureLimit=1)
    ms = measurements(S, F, S, S)
    status = start(c)
    for m in ms:
        status = advance(c, status, m)
    assert finish(c, status) == decide(c, ms, finished=True)
