"""Turn a finished experiment run into the scoring's ``RunRecord`` (the evidence a score is computed from).

Mapping from the workflow's status::

    phase completed / not-recovered -> outcome completed (recovery_time None when it never recovered)
    phase breached                  -> breached            aborted -> aborted
    phase refused                   -> refused             failed  -> failed
    detection_time   first failing measurement during the fault, from injection
    recovery_time    revert -> first time every check held again
    blast radius     allowed: every pod the selector matched; touched: the pods hit;
                     max_targets: the share blastRadius.maxPodsPercent allows (single-round faults)

    detection_objective   steadyState.detectWithin, when something needed detecting: a run whose checks
                     all held through the fault had nothing to notice, and scoring that as "never
                     detected" (0) would punish the most resilient outcome; the term then does not apply
    error_budget     with safety.errorBudget.sloTarget and a run that injected: the remaining budget read by
                     the safety rail before injection minus the one read after the recovery window,
                     burned = max(0, before - after) as a fraction of the whole budget; no data at either
                     end gives no figure (never a guess) and the message says which end

Only threshold checks carry an absolute tolerance; relative checks are left out of the evidence
(the scoring model has no band for them) and named in the record's message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.chaos.models import BudgetReading
from orchestrator.scoring.model import BlastRadius, CheckEvidence, ErrorBudget, Outcome, RunRecord, Tolerance
from orchestrator.specs.checks import Threshold
from workflows.chaos_models import ChaosPhase, RunRecordRequest

__all__ = ["budget_burn", "build_record", "wants_budget_after"]

_OUTCOMES = {
    ChaosPhase.COMPLETED: Outcome.COMPLETED,
    ChaosPhase.NOT_RECOVERED: Outcome.COMPLETED,
    ChaosPhase.BREACHED: Outcome.BREACHED,
    ChaosPhase.ABORTED: Outcome.ABORTED,
    ChaosPhase.REFUSED: Outcome.REFUSED,
    ChaosPhase.FAILED: Outcome.FAILED,
}


def wants_budget_after(req: RunRecordRequest) -> bool:
    """Whether recording this run needs the budget read again: a declared SLO, and a fault that went in."""
    budget = req.experiment.spec.safety.error_budget
    return budget is not None and budget.slo_target is not None and req.status.injected_at is not None


def budget_burn(
    req: RunRecordRequest, after: BudgetReading | None
) -> tuple[ErrorBudget | None, str | None]:
    """The run's ``ErrorBudget`` for scoring, or None; and a note for the record's message."""
    budget = req.experiment.spec.safety.error_budget
    if budget is None or budget.slo_target is None or req.status.injected_at is None:
        # Nothing claimed, or nothing injected: there is no burn to speak of.
        return None, None
    before = req.status.budget_before or (req.plan.budget if req.plan else None)
    if before is None or before.remaining is None:
        why = before.message if before is not None and before.message else "it was not read before injection"
        return None, f"error budget burn not measured: no data before injection ({why})"
    if after is None or after.remaining is None:
        why = after.message if after is not None and after.message else "it was not read after the run"
        return None, f"error budget burn not measured: no data after the recovery window ({why})"
    # Budget that grew back during the run (the SLO window slid past old errors) is not a negative cost.
    burned = max(0.0, before.remaining - after.remaining)
    note = (f"error budget remaining {before.remaining:.6g} before injection, {after.remaining:.6g} after "
            f"the recovery window")
    return ErrorBudget(slo_target=budget.slo_target, burned=burned), note


def build_record(req: RunRecordRequest, budget_after: BudgetReading | None = None) -> RunRecord:
    """The run record; ``budget_after`` is the budget read when the run is saved (see ``wants_budget_after``)."""
    exp = req.experiment
    spec = exp.spec
    status = req.status
    by_name = {m.check: m for m in req.measurements}
    verdicts = {c.check: c.phase.value for c in status.checks}
    evidence: list[CheckEvidence] = []
    skipped: list[str] = []
    for check in spec.steady_state.checks:
        if not isinstance(check.condition, Threshold):
            skipped.append(check.name)
            continue
        m = by_name.get(check.name)
        evidence.append(CheckEvidence(
            name=check.name, query=check.query, tolerance=Tolerance.from_check(check),
            before=m.before if m else [], during=m.during if m else [], after=m.after if m else [],
            verdict=verdicts.get(check.name),
        ))
    started = status.started_at or status.finished_at
    ended = status.finished_at or started
    assert started is not None and ended is not None
    detection = None
    if status.first_breach_at and status.injected_at:
        detection = max(status.first_breach_at - status.injected_at, timedelta(0))
    recovery = None
    if status.recovered and status.recovered_at and status.reverted_at:
        recovery = status.recovered_at - status.reverted_at
    max_targets = None
    if spec.fault.type != "pod-kill" or getattr(spec.fault, "interval", None) is None:
        max_targets = len(status.candidates) * spec.blast_radius.max_pods_percent // 100 or None
    error_budget, budget_note = budget_burn(req, budget_after)
    notes: list[str] = []
    if spec.steady_state.detect_within is not None and detection is None and status.injected_at is not None:
        notes.append("detection not scored: every check held through the fault, so there was nothing to detect")
    if budget_note:
        notes.append(budget_note)
    message = status.reason or ""
    if skipped:
        message += f" (relative checks not scored: {', '.join(skipped)})"
    message = "; ".join(part for part in (message.strip(), *notes) if part)
    return RunRecord(
        run_id=status.run or status.workflow_id or f"{exp.metadata.name}-{_stamp(started)}",
        experiment=exp.metadata.name,
        service=f"{spec.target.namespace}/{spec.target.app}",
        fault=spec.fault.type,
        outcome=_OUTCOMES.get(status.phase, Outcome.FAILED),
        started_at=started,
        ended_at=max(ended, started),
        injected_at=status.injected_at,
        reverted_at=status.reverted_at,
        checks=evidence,
        detection_time=detection,
        detection_objective=spec.steady_state.detect_within if detection is not None else None,
        recovery_time=recovery,
        recovery_objective=spec.steady_state.recover_within,
        blast_radius=BlastRadius(
            allowed=sorted(set(status.candidates)), touched=sorted(set(status.touched)), max_targets=max_targets
        ),
        error_budget=error_budget,
        workflow_id=status.workflow_id or None,
        message=message,
    )


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S")
