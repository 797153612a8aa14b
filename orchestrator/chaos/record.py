"""Turn a finished experiment run into the scoring's ``RunRecord`` (the evidence a score is computed from).

Mapping from the workflow's status::

    phase completed / not-recovered -> outcome completed (recovery_time None when it never recovered)
    phase breached                  -> breached            aborted -> aborted
    phase refused                   -> refused             failed  -> failed
    detection_time   first failing measurement during the fault, from injection
    recovery_time    revert -> first time every check held again
    blast radius     allowed: every pod the selector matched; touched: the pods hit;
                     max_targets: the share blastRadius.maxPodsPercent allows (single-round faults)

Only threshold checks carry an absolute tolerance; relative checks are left out of the evidence
(the scoring model has no band for them) and named in the record's message.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from orchestrator.scoring.model import BlastRadius, CheckEvidence, Outcome, RunRecord, Tolerance
from orchestrator.specs.checks import Threshold
from workflows.chaos_models import ChaosPhase, RunRecordRequest

__all__ = ["build_record"]

_OUTCOMES = {
    ChaosPhase.COMPLETED: Outcome.COMPLETED,
    ChaosPhase.NOT_RECOVERED: Outcome.COMPLETED,
    ChaosPhase.BREACHED: Outcome.BREACHED,
    ChaosPhase.ABORTED: Outcome.ABORTED,
    ChaosPhase.REFUSED: Outcome.REFUSED,
    ChaosPhase.FAILED: Outcome.FAILED,
}


def build_record(req: RunRecordRequest) -> RunRecord:
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
    message = status.reason or ""
    if skipped:
        message += f" (relative checks not scored: {', '.join(skipped)})"
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
        recovery_time=recovery,
        recovery_objective=spec.steady_state.recover_within,
        blast_radius=BlastRadius(
            allowed=sorted(set(status.candidates)), touched=sorted(set(status.touched)), max_targets=max_targets
        ),
        workflow_id=status.workflow_id or None,
        message=message.strip(),
    )


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S")
