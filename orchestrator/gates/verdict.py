"""Turn a check's measurements into a verdict; pure and deterministic, so workflow code calls it.

``decide`` replays the measurements in order and stops at the first limit breached, so
a final verdict never changes when more measurements are appended (the workflow stops
evaluating a check once it is final, but a replay over a longer list must agree).

Rules, after argo-rollouts' AnalysisRun, tightened to fail closed:

* failed        when failures exceed ``failureLimit``;
* inconclusive  when inconclusive measurements exceed ``inconclusiveLimit``;
* error         when consecutive errors exceed ``consecutiveErrorLimit``;
* successful    when ``count`` measurements with a result were taken, or the step ended
                (``finished=True``), without a breach *and* with at least one
                successful measurement;
* running       otherwise.

Errors (the query could not be evaluated) do not use up ``count``: they are bounded by
``consecutiveErrorLimit`` instead, so a flaky Prometheus cannot "complete" a gate.
A check that ends with no successful measurement (none taken, only errors, or only
failures and inconclusive results within their limits) is inconclusive, never
successful: ``noData: pass`` decides what an *empty query result* means, not what
never having looked means.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement, Phase
from orchestrator.specs.checks import Check


def decide(check: Check, measurements: Sequence[Measurement], *, finished: bool) -> CheckStatus:
    """The status of ``check`` after ``measurements`` (oldest first); ``finished``: the step or run ended."""
    successes = failures = inconclusive = errors = consecutive = 0
    taken = 0
    last: Measurement | None = None
    count = 0

    def status(phase: CheckPhase, reason: str) -> CheckStatus:
        return CheckStatus(
            check=check.name,
            phase=phase,
            measurements=count,
            successes=successes,
            failures=failures,
            inconclusive=inconclusive,
            errors=errors,
            consecutive_errors=consecutive,
            last=last,
            reason=f"{check.name} {phase}: {reason}",
        )

    for measurement in measurements:
        last = measurement
        count += 1
        if measurement.phase is Phase.ERROR:
            errors += 1
            consecutive += 1
        else:
            consecutive = 0
            taken += 1
            if measurement.phase is Phase.SUCCESSFUL:
                successes += 1
            elif measurement.phase is Phase.FAILED:
                failures += 1
            else:
                inconclusive += 1

        if failures > check.failure_limit:
            return status(
                CheckPhase.FAILED,
                f"{measurement.message} ({_n(failures, 'failure')} > limit {check.failure_limit})",
            )
        if inconclusive > check.inconclusive_limit:
            return status(
                CheckPhase.INCONCLUSIVE,
                f"{measurement.message} ({inconclusive} inconclusive > limit {check.inconclusive_limit})",
            )
        if consecutive > check.consecutive_error_limit:
            return status(
                CheckPhase.ERROR,
                f"{measurement.message} ({_n(consecutive, 'consecutive error')} > limit "
                f"{check.consecutive_error_limit})",
            )
        if check.count is not None and taken >= check.count:
            return _complete(status, successes, f"{taken} of {check.count} measurements taken", measurement)

    if finished:
        if count == 0:
            return status(CheckPhase.INCONCLUSIVE, "no measurement was taken before the step ended")
        assert last is not None
        return _complete(status, successes, f"step ended after {_n(count, 'measurement')}", last)

    if last is None:
        return status(CheckPhase.RUNNING, "waiting for the first measurement")
    progress = f"{taken} of {check.count}" if check.count is not None else str(taken)
    return status(CheckPhase.RUNNING, f"{progress} measurements taken; last: {last.message}")


def _complete(
    status: Callable[[CheckPhase, str], CheckStatus], successes: int, how: str, last: Measurement
) -> CheckStatus:
    if successes == 0:
        return status(CheckPhase.INCONCLUSIVE, f"{how}, none successful (last: {last.message})")
    return status(CheckPhase.SUCCESSFUL, f"{how}, {successes} successful (last: {last.message})")


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
