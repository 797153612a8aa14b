"""Turn a check's measurements into a verdict; pure and deterministic, so workflow code calls it.

The verdict is a fold: ``start`` gives the status before any measurement, ``advance`` adds one
measurement, ``finish`` applies the end of the step. A workflow keeps only the folded
``CheckStatus`` (counters and the last few measurements), so a check that runs for days costs
a few hundred bytes of state and survives continue-as-new with its counters intact.
``decide`` folds a whole list, for callers that hold one. A final verdict never changes when
more measurements are folded in.

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

RECENT = 10
"""How many measurements a status keeps besides its counters."""


def start(check: Check) -> CheckStatus:
    """The status of a check before its first measurement."""
    return CheckStatus(check=check.name, phase=CheckPhase.RUNNING,
                       reason=f"{check.name} running: waiting for the first measurement")


def advance(check: Check, status: CheckStatus, measurement: Measurement) -> CheckStatus:
    """``status`` with one more measurement folded in; a final status is returned unchanged."""
    if status.phase.final:
        return status
    if check.judge is not None and measurement.phase is not Phase.ERROR:
        return _judged(check, status, measurement)
    successes, failures, inconclusive = status.successes, status.failures, status.inconclusive
    errors, consecutive = status.errors, status.consecutive_errors
    if measurement.phase is Phase.ERROR:
        errors += 1
        consecutive += 1
    else:
        consecutive = 0
        if measurement.phase is Phase.SUCCESSFUL:
            successes += 1
        elif measurement.phase is Phase.FAILED:
            failures += 1
        else:
            inconclusive += 1
    taken = successes + failures + inconclusive
    folded = status.model_copy(update={
        "measurements": status.measurements + 1, "successes": successes, "failures": failures,
        "inconclusive": inconclusive, "errors": errors, "consecutive_errors": consecutive,
        "last": measurement, "recent": [*status.recent[-(RECENT - 1):], measurement],
        "data_seen": status.data_seen or not (measurement.no_data or measurement.phase is Phase.ERROR),
    })

    def verdict(phase: CheckPhase, reason: str) -> CheckStatus:
        return folded.model_copy(update={"phase": phase, "reason": f"{check.name} {phase}: {reason}"})

    if failures > check.failure_limit:
        return verdict(CheckPhase.FAILED,
                       f"{measurement.message} ({_n(failures, 'failure')} > limit {check.failure_limit})")
    if inconclusive > check.inconclusive_limit:
        return verdict(CheckPhase.INCONCLUSIVE,
                       f"{measurement.message} ({inconclusive} inconclusive > limit {check.inconclusive_limit})")
    if consecutive > check.consecutive_error_limit:
        return verdict(CheckPhase.ERROR, f"{measurement.message} ({_n(consecutive, 'consecutive error')} > limit "
                                         f"{check.consecutive_error_limit})")
    if check.count is not None and taken >= check.count:
        return _complete(verdict, successes, f"{taken} of {check.count} measurements taken", measurement)
    progress = f"{taken} of {check.count}" if check.count is not None else str(taken)
    return verdict(CheckPhase.RUNNING, f"{progress} measurements taken; last: {measurement.message}")


def _judged(check: Check, status: CheckStatus, measurement: Measurement) -> CheckStatus:
    """A judge check's look: the sequential test itself decides (its own error bound replaces the limits).

    A look that neither shows a regression nor bounds the effect is the judge still collecting: it is
    not an inconclusive measurement, and it is never counted against ``inconclusiveLimit``.
    """
    decided = {Phase.FAILED: CheckPhase.FAILED, Phase.SUCCESSFUL: CheckPhase.SUCCESSFUL}
    phase = decided.get(measurement.phase, CheckPhase.RUNNING)
    return status.model_copy(update={
        "phase": phase, "measurements": status.measurements + 1, "consecutive_errors": 0,
        "successes": status.successes + (phase is CheckPhase.SUCCESSFUL),
        "failures": status.failures + (phase is CheckPhase.FAILED),
        "last": measurement, "recent": [*status.recent[-(RECENT - 1):], measurement], "data_seen": True,
        "outcome": measurement.outcome, "reason": f"{check.name} {phase}: {measurement.message}"})


def finish(check: Check, status: CheckStatus) -> CheckStatus:
    """The verdict when the step or run ends: what has not decided by then decides now."""
    if status.phase.final:
        return status

    def verdict(phase: CheckPhase, reason: str) -> CheckStatus:
        return status.model_copy(update={"phase": phase, "reason": f"{check.name} {phase}: {reason}"})

    if status.last is None:
        return verdict(CheckPhase.INCONCLUSIVE, "no measurement was taken before the step ended")
    return _complete(verdict, status.successes, f"step ended after {_n(status.measurements, 'measurement')}",
                     status.last)


def decide(check: Check, measurements: Sequence[Measurement], *, finished: bool) -> CheckStatus:
    """The status of ``check`` after ``measurements`` (oldest first); ``finished``: the step or run ended."""
    status = start(check)
    for measurement in measurements:
        status = advance(check, status, measurement)
    return finish(check, status) if finished else status


def _complete(verdict: Callable[[CheckPhase, str], CheckStatus], successes: int, how: str,
              last: Measurement) -> CheckStatus:
    if successes == 0:
        return verdict(CheckPhase.INCONCLUSIVE, f"{how}, none successful (last: {last.message})")
    return verdict(CheckPhase.SUCCESSFUL, f"{how}, {successes} successful (last: {last.message})")


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
