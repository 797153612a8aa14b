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

    detection        the earlier of the first failing check and the first firing of the detection query
                     (``scoring.detection``), read over the run window when the run is saved
    impact, affected ``scoring.impact`` / ``scoring.affected`` read over the run window (``WindowEvidence``)

The input is ``evidence.RunEvidence``, plain data of this package: recording never imports the
workflow package (``RunEvidence.of`` reads the workflow's request by attribute).

Only threshold checks carry an absolute tolerance; relative checks are left out of the evidence
(the scoring model has no band for them) and named in the record's message.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.chaos.evidence import RunEvidence, WindowEvidence
from orchestrator.chaos.models import BudgetReading
from orchestrator.errors import OrchestratorError
from orchestrator.scoring.model import (
    BlastRadius,
    CheckEvidence,
    CustomerImpact,
    Detection,
    ErrorBudget,
    Outcome,
    RunRecord,
    Tolerance,
)
from orchestrator.specs.checks import Threshold
from orchestrator.specs.scoring import MAX_POINTS

if TYPE_CHECKING:
    from orchestrator.gates.prometheus import MetricProvider

__all__ = ["budget_burn", "build_record", "collect_window", "record_run", "wants_budget_after"]

# Keyed by the workflow phase's string value, so this module needs no workflow import.
_OUTCOMES = {
    "completed": Outcome.COMPLETED,
    "not-recovered": Outcome.COMPLETED,
    "breached": Outcome.BREACHED,
    "aborted": Outcome.ABORTED,
    "refused": Outcome.REFUSED,
    "failed": Outcome.FAILED,
}


def wants_budget_after(source: RunEvidence | object) -> bool:
    """Whether recording this run needs the budget read again: a declared SLO, and a fault that went in."""
    req = RunEvidence.of(source)
    budget = req.experiment.spec.safety.error_budget
    return budget is not None and budget.slo_target is not None and req.status.injected_at is not None


def budget_burn(
    source: RunEvidence | object, after: BudgetReading | None
) -> tuple[ErrorBudget | None, str | None]:
    """The run's ``ErrorBudget`` for scoring, or None; and a note for the record's message."""
    req = RunEvidence.of(source)
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


def build_record(source: RunEvidence | object, budget_after: BudgetReading | None = None) -> RunRecord:
    """The run record; ``budget_after`` is the budget read when the run is saved (see ``wants_budget_after``).

    ``source`` is a ``RunEvidence`` or anything with its attributes (the workflow's record request).
    """
    req = RunEvidence.of(source)
    window = req.window
    exp = req.experiment
    spec = exp.spec
    status = req.status
    by_name = {m.check: m for m in req.measurements}
    verdicts = {c.check: c.phase for c in status.checks}
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
    detected: Detection | None = None
    if status.first_breach_at and status.injected_at:
        detected = Detection(at=status.first_breach_at, source="a steady-state check failed")
    if window is not None and window.detection is not None and (detected is None or window.detection.at < detected.at):
        detected = window.detection
    detection = None
    if detected is not None and status.injected_at:
        detection = max(detected.at - status.injected_at, timedelta(0))
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
    if window is not None:
        notes.extend(window.notes)
    message = status.reason or ""
    if skipped:
        message += f" (relative checks not scored: {', '.join(skipped)})"
    message = "; ".join(part for part in (message.strip(), *notes) if part)
    return RunRecord(
        run_id=status.run or status.workflow_id or f"{exp.metadata.name}-{_stamp(started)}",
        experiment=exp.metadata.name,
        service=f"{spec.target.namespace}/{spec.target.app}",
        fault=spec.fault.type,
        outcome=_OUTCOMES.get(str(status.phase), Outcome.FAILED),
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
            allowed=sorted(set(status.candidates)), touched=sorted(set(status.touched)), max_targets=max_targets,
            affected=window.affected if window is not None else None,
        ),
        impact=window.impact if window is not None else None,
        detection=detected if detection is not None else None,
        error_budget=error_budget,
        workflow_id=status.workflow_id or None,
        message=message,
    )


def record_run(
    source: RunEvidence | object, metrics: MetricProvider, budget_after: BudgetReading | None = None
) -> RunRecord:
    """What the save activity calls: read the window evidence from Prometheus, then build the record."""
    evidence = RunEvidence.of(source)
    return build_record(evidence.model_copy(update={"window": collect_window(evidence, metrics)}), budget_after)


def collect_window(source: RunEvidence | object, metrics: MetricProvider) -> WindowEvidence | None:
    """Evaluate the experiment's ``scoring`` queries at even steps from injection to the end of the run.

    A query that cannot be read leaves its figure out and says why in the notes: losing the
    whole record over one unreadable figure would be worse (the same rule as the budget).
    """
    from orchestrator.chaos.planning import variables_for
    from orchestrator.gates.template import render

    req = RunEvidence.of(source)
    queries = req.experiment.spec.scoring
    start, end = req.status.injected_at, req.status.finished_at
    if queries is None or start is None or end is None:
        return None
    variables = variables_for(req.experiment)
    step = max(queries.step, (end - start) / (MAX_POINTS - 1))
    times = [start + step * i for i in range(int((end - start) / step) + 1)] or [start]
    notes: list[str] = []

    def series(kind: str, query: str) -> list[tuple[datetime, list[tuple[dict[str, str], float]]]] | None:
        try:
            promql = render(query, variables)
            return [(t, [(s.labels, s.value) for s in metrics.query(promql, at=t)]) for t in times]
        except OrchestratorError as exc:
            notes.append(f"{kind} not measured: {exc}")
            return None

    impact = None
    if queries.impact is not None:
        shares: dict[str, float | None] = {}
        used: dict[str, str] = {}
        samples = 0
        for name, query in (("failed", queries.impact.failed_share), ("slow", queries.impact.slow_share)):
            if query is None:
                continue
            read = series(f"{name} share", query)
            if read is None:
                continue
            used[name] = query
            # Several series: the worst one counts (fail towards more impact, never less).
            points = [max(v for _, v in values) for _, values in read if values]
            points = [min(1.0, max(0.0, v)) for v in points if math.isfinite(v)]
            samples = max(samples, len(points))
            shares[name] = sum(points) / len(points) if points else None
            if not points:
                notes.append(f"{name} share not measured: the query returned no data over the run")
        if any(v is not None for v in shares.values()):
            impact = CustomerImpact(failed_share=shares.get("failed"), slow_share=shares.get("slow"),
                                    samples=samples, queries=used)
    detection = None
    if queries.detection is not None:
        read = series("detection query", queries.detection)
        fired = [t for t, values in read or [] if any(v > 0 for _, v in values)]
        if fired:
            detection = Detection(at=fired[0], source=f"detection query {queries.detection}")
    affected = None
    if queries.affected is not None:
        read = series("affected targets", queries.affected)
        if read is not None:
            label = queries.affected_label
            affected = sorted({labels.get(label, "") for _, values in read for labels, v in values if v > 0} - {""})
    return WindowEvidence(impact=impact, detection=detection, affected=affected, notes=notes)


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S")
