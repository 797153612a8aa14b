"""Tests of resilience scoring, and the builders they share.

``make_run`` builds a run whose every factor applies and scores 1 unless a keyword says otherwise, so each
test changes exactly the one thing whose effect it computes by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orchestrator.gates.model import Measurement, Phase
from orchestrator.scoring.model import (
    BlastRadius,
    CheckEvidence,
    CustomerImpact,
    ErrorBudget,
    Outcome,
    RunRecord,
    Tolerance,
)

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
"""Injection time of the default run."""


def series(check: str, start: datetime, values: list[float | None], step: int = 10) -> list[Measurement]:
    """One measurement every ``step`` seconds from ``start``; None or NaN stand for no data."""
    out = []
    for i, value in enumerate(values):
        no_data = value is None or value != value
        out.append(
            Measurement(
                check=check,
                phase=Phase.ERROR if no_data else Phase.SUCCESSFUL,
                value=value,
                query=f"rate({check}[1m])",
                message="no data" if no_data else "ok",
                at=start + timedelta(seconds=step * i),
            )
        )
    return out


def error_rate(
    during: list[float | None] | None = None,
    before: list[float | None] | None = None,
    after: list[float | None] | None = None,
    tolerance: Tolerance | None = None,
) -> CheckEvidence:
    """An error-ratio check steady at 0.01 with a 0.05 ceiling: a value of 0.03 uses half the tolerance."""
    return CheckEvidence(
        name="error-rate",
        query="rate(errors[1m]) / rate(requests[1m])",
        tolerance=tolerance or Tolerance(max=0.05),
        before=series("error-rate", T0 - timedelta(seconds=30), before or [0.01, 0.01, 0.01]),
        during=series("error-rate", T0, during if during is not None else [0.01, 0.01, 0.01, 0.01]),
        after=series("error-rate", T0 + timedelta(seconds=60), after or [0.01, 0.01, 0.01]),
        verdict="successful",
    )


def make_run(**overrides: Any) -> RunRecord:
    """A perfect run of ``pod-kill`` on ``shop/checkout`` ending at T0 + 90 s."""
    ended = overrides.pop("ended_at", T0 + timedelta(seconds=90))
    shift = ended - (T0 + timedelta(seconds=90))
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "experiment": "pod-kill",
        "service": "shop/checkout",
        "fault": "pod-kill",
        "outcome": Outcome.COMPLETED,
        "started_at": T0 - timedelta(seconds=30) + shift,
        "ended_at": ended,
        "injected_at": T0 + shift,
        "reverted_at": T0 + timedelta(seconds=40) + shift,
        "checks": [error_rate()],
        "detection_time": timedelta(seconds=30),
        "detection_objective": timedelta(seconds=60),
        "recovery_time": timedelta(seconds=30),
        "recovery_objective": timedelta(seconds=60),
        "blast_radius": BlastRadius(allowed=["checkout-a", "checkout-b"], touched=["checkout-a"], max_targets=1),
        "impact": CustomerImpact(failed_share=0.0, slow_share=0.0, samples=9),
        "error_budget": ErrorBudget(slo_target=0.999, burned=0.0),
        "workflow_id": "chaos-pod-kill-1",
        "links": {"history": "http://temporal.example/wf/chaos-pod-kill-1"},
    }
    fields.update(overrides)
    # Move the evidence with the run, so that charts of a run ended days ago still line up.
    fields["checks"] = [_shifted(c, shift) for c in fields["checks"]]
    return RunRecord(**fields)


def _shifted(check: CheckEvidence, shift: timedelta) -> CheckEvidence:
    def move(ms: list[Measurement]) -> list[Measurement]:
        return [m.model_copy(update={"at": m.at + shift}) for m in ms]

    return check.model_copy(
        update={"before": move(check.before), "during": move(check.during), "after": move(check.after)}
    )
