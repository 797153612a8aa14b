"""The resilience score: 0-100 per run, aggregated per service. Pure functions, no I/O.

Per run (``score_run``)::

    score = 100 · C · min(K, Σᵢ wᵢ·sᵢ / Σᵢ wᵢ)    over the sub-scores i that apply

    sᵢ ∈ [0, 1]   deviation, recovery, detection (only with a detection objective),
                  budget (only with a declared error budget)
    wᵢ            WEIGHTS; a sub-score that does not apply drops out and its weight is
                  shared by the others in proportion (the sum is renormalised)
    C ∈ {0, 1}    containment gate: 0 when the blast radius escaped its limits
    K             NEVER_RECOVERED_CAP when the steady state never came back, else 1

Per service (``score_service``)::

    fᵣ = 2^(-age_r / HALF_LIFE)                                  freshness of run r
    per experiment e:  mₑ = Σ fᵣ·xᵣ / Σ fᵣ,  sdₑ = √(Σ fᵣ·(xᵣ - mₑ)² / Σ fᵣ)
                       Eₑ = max(0, mₑ - REPEATABILITY_K · sdₑ),  Wₑ = min(1, Σ fᵣ)
    service = Σ Wₑ·Eₑ / max(EVIDENCE_TARGET, Σ Wₑ)

Refused and failed runs put no fault on the service, so they are kept and shown but not
scored. Every constant lives in ``ScoringConfig`` so a team may tune them; the defaults are
explained in docs/scoring.md.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.scoring.model import CheckEvidence, Outcome, RunRecord, Tolerance

# -- constants ---------------------------------------------------------------------------------------------

WEIGHT_DEVIATION = 0.35
"""The steady-state hypothesis is the experiment's claim: how well it held weighs most."""
WEIGHT_RECOVERY = 0.30
"""How long users felt the fault after it was removed."""
WEIGHT_BUDGET = 0.20
"""The user-facing cost in SLO terms; partly overlaps deviation, so it weighs less."""
WEIGHT_DETECTION = 0.15
"""Observability rather than the service's own resilience: the smallest share."""

RECOVERY_ZERO_AT = 3.0
"""Recovery sub-score falls linearly from 1 at the objective to 0 at this multiple of it."""
DETECTION_ZERO_AT = 3.0
"""Detection sub-score falls linearly from 1 at the objective to 0 at this multiple of it."""
BUDGET_MAX_BURN = 0.05
"""A run that burns 5 % of the budget scores 0 on budget: as much as a ticket-worthy incident
(the SRE workbook's 6 h / 30 min burn-rate alert fires at 5 % of a 30-day budget)."""
NEVER_RECOVERED_CAP = 0.25
"""A run whose steady state never returned is capped at 25 points, whatever else went well."""
FRESHNESS_HALF_LIFE = timedelta(days=14)
"""A run this old counts half as much as one that ended now."""
REPEATABILITY_K = 1.0
"""Experiment score = freshness-weighted mean minus this many weighted standard deviations."""
EVIDENCE_TARGET = 1.0
"""Total freshness weight a service needs for its score to stand at full height."""
RESILIENT_AT = 80.0
DEGRADED_AT = 50.0
TREND_WINDOW = 3
"""The trend direction compares the mean of the last runs with the mean of the runs before them."""
TREND_EPSILON = 5.0
"""Points of change below which the trend is called steady."""

SCORED_OUTCOMES = frozenset({Outcome.COMPLETED, Outcome.BREACHED, Outcome.ABORTED})


class ScoringConfig(BaseModel):
    """Every constant of the formula, overridable (e.g. a longer half-life for rarely-run experiments)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weight_deviation: float = Field(default=WEIGHT_DEVIATION, ge=0)
    weight_recovery: float = Field(default=WEIGHT_RECOVERY, ge=0)
    weight_detection: float = Field(default=WEIGHT_DETECTION, ge=0)
    weight_budget: float = Field(default=WEIGHT_BUDGET, ge=0)
    recovery_zero_at: float = Field(default=RECOVERY_ZERO_AT, gt=1)
    detection_zero_at: float = Field(default=DETECTION_ZERO_AT, gt=1)
    budget_max_burn: float = Field(default=BUDGET_MAX_BURN, gt=0)
    never_recovered_cap: float = Field(default=NEVER_RECOVERED_CAP, ge=0, le=1)
    half_life: timedelta = FRESHNESS_HALF_LIFE
    repeatability_k: float = Field(default=REPEATABILITY_K, ge=0)
    evidence_target: float = Field(default=EVIDENCE_TARGET, gt=0)
    resilient_at: float = RESILIENT_AT
    degraded_at: float = DEGRADED_AT
    trend_window: int = Field(default=TREND_WINDOW, ge=1)
    trend_epsilon: float = Field(default=TREND_EPSILON, ge=0)

    @model_validator(mode="after")
    def _sane(self) -> ScoringConfig:
        if self.half_life <= timedelta(0):
            raise ValueError("half_life must be positive")
        if self.weight_deviation + self.weight_recovery <= 0:
            raise ValueError("deviation and recovery weights cannot both be 0")
        return self

    def weight(self, name: str) -> float:
        return float(getattr(self, f"weight_{name}"))


DEFAULT_CONFIG = ScoringConfig()


class Status(StrEnum):
    """The one word a reviewer reads first."""

    RESILIENT = "RESILIENT"
    DEGRADED = "DEGRADED"
    FRAGILE = "FRAGILE"
    ESCAPED = "ESCAPED"
    UNSCORED = "UNSCORED"


# -- result models -----------------------------------------------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class SubScore(_Result):
    """One term of the weighted sum (or the containment gate), with the reason for its value."""

    name: str
    value: float | None
    """In [0, 1]; None when the term does not apply to the run."""
    weight: float | None
    """Effective weight after redistribution; None for the containment gate and terms that do not apply."""
    why: str


class RunScore(_Result):
    run_id: str
    experiment: str
    service: str
    outcome: Outcome
    at: datetime
    score: float | None
    """0-100, None when the run is not scored (refused, failed)."""
    status: Status
    subscores: list[SubScore]
    cap: str | None = None
    """Why the weighted sum was cut (containment gate, never recovered), if it was."""


class ExperimentScore(_Result):
    experiment: str
    runs: int
    mean: float
    stddev: float
    score: float
    """mean - REPEATABILITY_K · stddev, floored at 0."""
    weight: float
    """min(1, Σ freshness): how much this experiment counts in the service score."""
    latest_run_id: str
    latest_score: float


class TrendPoint(_Result):
    at: datetime
    run_id: str
    experiment: str
    score: float


class ServiceScore(_Result):
    service: str
    as_of: datetime
    score: float | None
    status: Status
    experiments: list[ExperimentScore]
    runs: list[RunScore]
    """Every run, scored or not, newest last."""
    trend: list[TrendPoint]
    direction: str
    """improving, declining, steady, or "too few runs"."""
    evidence: float
    """Σ Wₑ: below EVIDENCE_TARGET the score is scaled down for staleness."""


# -- sub-scores --------------------------------------------------------------------------------------------


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _reference(check: CheckEvidence) -> float | None:
    if check.tolerance.baseline is not None:
        return check.tolerance.baseline
    before = [m.value for m in check.before if m.value is not None and math.isfinite(m.value)]
    return statistics.median(before) if before else None


def normalised_deviation(value: float | None, reference: float, tolerance: Tolerance) -> float:
    """How far ``value`` moved from ``reference`` towards the bound on its side: 0 = not at all, 1 = at/past it.

    No data (None, NaN, ±inf) is 1: a metric that cannot be seen during the fault is assumed
    to have broken (fail closed). A side without a bound cannot be breached, so moving that
    way costs nothing.
    """
    if value is None or not math.isfinite(value):
        return 1.0
    if value >= reference:
        bound = tolerance.max
        if bound is None or value == reference:
            return 0.0
        span = bound - reference
    else:
        bound = tolerance.min
        if bound is None:
            return 0.0
        span = reference - bound
    if span <= 0:
        # The steady state already sat on or past the bound before the fault: no room at all.
        return 1.0
    return min(1.0, abs(value - reference) / span)


def check_deviation(check: CheckEvidence) -> tuple[float, str]:
    """1 - the peak normalised deviation of the check during the fault, with the reason."""
    if not check.during:
        return 0.0, f"{check.name}: no measurement during the fault (counted as worst case)"
    reference = _reference(check)
    if reference is None:
        return 0.0, f"{check.name}: no steady-state value before the fault and no baseline (worst case)"
    worst = max(check.during, key=lambda m: normalised_deviation(m.value, reference, check.tolerance))
    peak = normalised_deviation(worst.value, reference, check.tolerance)
    if not _finite(worst.value):
        return 0.0, f"{check.name}: no data during the fault at {worst.at:%H:%M:%S} (worst case)"
    bounds = _format_bounds(check.tolerance)
    return 1.0 - peak, (
        f"{check.name}: peak {_num(worst.value)} vs steady {_num(reference)} ({bounds}): "
        f"{peak * 100:.0f} % of tolerance used"
    )


def deviation_subscore(run: RunRecord) -> tuple[float, str]:
    """The weakest check's deviation sub-score: the hypothesis is a conjunction of its checks."""
    if not run.checks:
        return 0.0, "no steady-state checks recorded (worst case)"
    results = [check_deviation(c) for c in run.checks]
    value = min(v for v, _ in results)
    worst_first = sorted(results, key=lambda r: r[0])
    return value, "; ".join(why for _, why in worst_first)


def _decay(actual: timedelta, objective: timedelta, zero_at: float) -> float:
    """1 up to the objective, then linear down to 0 at ``zero_at`` x objective."""
    ratio = actual / objective
    if ratio <= 1:
        return 1.0
    return max(0.0, 1.0 - (ratio - 1.0) / (zero_at - 1.0))


def recovery_subscore(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> tuple[float, str]:
    objective = _secs(run.recovery_objective)
    if run.recovery_time is None:
        return 0.0, f"never recovered (objective {objective})"
    value = _decay(run.recovery_time, run.recovery_objective, config.recovery_zero_at)
    return value, f"recovered in {_secs(run.recovery_time)} (objective {objective})"


def detection_subscore(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> tuple[float | None, str]:
    if run.detection_objective is None:
        return None, "no detection objective declared: weight shared by the other terms"
    objective = _secs(run.detection_objective)
    if run.detection_time is None:
        return 0.0, f"fault never detected (objective {objective})"
    value = _decay(run.detection_time, run.detection_objective, config.detection_zero_at)
    return value, f"detected after {_secs(run.detection_time)} (objective {objective})"


def budget_subscore(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> tuple[float | None, str]:
    if run.error_budget is None:
        return None, "no error budget declared: weight shared by the other terms"
    burned = run.error_budget.burned
    value = max(0.0, 1.0 - burned / config.budget_max_burn)
    return value, (
        f"burned {burned * 100:.2f} % of the {run.error_budget.slo_target * 100:g} % SLO budget "
        f"(0 at {config.budget_max_burn * 100:g} %)"
    )


def containment(run: RunRecord) -> tuple[bool, str]:
    radius = run.blast_radius
    touched = len(set(radius.touched))
    if radius.escaped:
        return False, f"touched targets outside the allowed set: {', '.join(radius.escaped)}"
    if radius.max_targets is not None and touched > radius.max_targets:
        return False, f"touched {touched} targets, limit {radius.max_targets}"
    limit = f", limit {radius.max_targets}" if radius.max_targets is not None else ""
    return True, f"{touched} touched, all within the {len(set(radius.allowed))} allowed{limit}"


# -- run score ---------------------------------------------------------------------------------------------


def status_for(score: float | None, config: ScoringConfig = DEFAULT_CONFIG) -> Status:
    if score is None:
        return Status.UNSCORED
    if score >= config.resilient_at:
        return Status.RESILIENT
    if score >= config.degraded_at:
        return Status.DEGRADED
    return Status.FRAGILE


def score_run(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> RunScore:
    """Score one run; see the module docstring for the formula."""
    at = run.ended_at
    if run.outcome not in SCORED_OUTCOMES:
        why = f"run {run.outcome.value}: no fault was judged, so the run is not scored"
        return RunScore(
            run_id=run.run_id,
            experiment=run.experiment,
            service=run.service,
            outcome=run.outcome,
            at=at,
            score=None,
            status=Status.UNSCORED,
            subscores=[SubScore(name="outcome", value=None, weight=None, why=why)],
        )

    raw: list[tuple[str, float | None, str]] = [
        ("deviation", *deviation_subscore(run)),
        ("recovery", *recovery_subscore(run, config)),
        ("detection", *detection_subscore(run, config)),
        ("budget", *budget_subscore(run, config)),
    ]
    total_weight = sum(config.weight(name) for name, value, _ in raw if value is not None)
    subscores: list[SubScore] = []
    weighted = 0.0
    for name, value, why in raw:
        if value is None:
            subscores.append(SubScore(name=name, value=None, weight=None, why=why))
            continue
        weight = config.weight(name) / total_weight
        weighted += weight * value
        subscores.append(SubScore(name=name, value=value, weight=weight, why=why))

    contained, why_contained = containment(run)
    subscores.append(SubScore(name="containment", value=1.0 if contained else 0.0, weight=None, why=why_contained))

    cap: str | None = None
    if not contained:
        weighted, cap = 0.0, "blast radius escaped: the run scores 0"
    elif run.recovery_time is None and weighted > config.never_recovered_cap:
        weighted = config.never_recovered_cap
        cap = f"never recovered: capped at {config.never_recovered_cap * 100:g}"
    score = 100.0 * weighted
    status = Status.ESCAPED if not contained else status_for(score, config)
    return RunScore(
        run_id=run.run_id,
        experiment=run.experiment,
        service=run.service,
        outcome=run.outcome,
        at=at,
        score=score,
        status=status,
        subscores=subscores,
        cap=cap,
    )


# -- service score -----------------------------------------------------------------------------------------


def freshness(age: timedelta, config: ScoringConfig = DEFAULT_CONFIG) -> float:
    """2^(-age / half-life); a run from the future (clock skew) counts as fresh, not more."""
    if age <= timedelta(0):
        return 1.0
    return float(0.5 ** (age / config.half_life))


def _weighted_mean_sd(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Weighted mean and weighted population standard deviation of (weight, value) pairs."""
    total = sum(w for w, _ in points)
    mean = sum(w * x for w, x in points) / total
    variance = sum(w * (x - mean) ** 2 for w, x in points) / total
    return mean, math.sqrt(max(0.0, variance))


def score_experiment(
    experiment: str, scores: list[RunScore], now: datetime, config: ScoringConfig = DEFAULT_CONFIG
) -> ExperimentScore:
    """Freshness-weighted lower bound of one experiment's scored runs (at least one)."""
    scored = sorted((s for s in scores if s.score is not None), key=lambda s: (s.at, s.run_id))
    if not scored:
        raise ValueError(f"experiment {experiment} has no scored run")
    points = [(freshness(now - s.at, config), float(s.score or 0.0)) for s in scored]
    mean, sd = _weighted_mean_sd(points)
    latest = scored[-1]
    return ExperimentScore(
        experiment=experiment,
        runs=len(scored),
        mean=mean,
        stddev=sd,
        score=max(0.0, mean - config.repeatability_k * sd),
        weight=min(1.0, sum(w for w, _ in points)),
        latest_run_id=latest.run_id,
        latest_score=float(latest.score or 0.0),
    )


def trend_direction(points: list[TrendPoint], config: ScoringConfig = DEFAULT_CONFIG) -> str:
    n = config.trend_window
    if len(points) < n + 1:
        return "too few runs"
    recent = [p.score for p in points[-n:]]
    earlier = [p.score for p in points[-2 * n : -n]]
    change = statistics.fmean(recent) - statistics.fmean(earlier)
    if change > config.trend_epsilon:
        return "improving"
    if change < -config.trend_epsilon:
        return "declining"
    return "steady"


def score_service(
    service: str, runs: list[RunRecord], now: datetime, config: ScoringConfig = DEFAULT_CONFIG
) -> ServiceScore:
    """Aggregate a service's runs as of ``now`` (passed in, so the same evidence always gives the same score)."""
    run_scores = sorted((score_run(r, config) for r in runs if r.service == service), key=lambda s: (s.at, s.run_id))
    by_experiment: dict[str, list[RunScore]] = {}
    for s in run_scores:
        if s.score is not None:
            by_experiment.setdefault(s.experiment, []).append(s)
    experiments = [score_experiment(e, ss, now, config) for e, ss in sorted(by_experiment.items())]
    evidence = sum(e.weight for e in experiments)
    score = (
        sum(e.weight * e.score for e in experiments) / max(config.evidence_target, evidence) if experiments else None
    )
    trend = [
        TrendPoint(at=s.at, run_id=s.run_id, experiment=s.experiment, score=s.score)
        for s in run_scores
        if s.score is not None
    ]
    return ServiceScore(
        service=service,
        as_of=now,
        score=score,
        status=status_for(score, config),
        experiments=experiments,
        runs=run_scores,
        trend=trend,
        direction=trend_direction(trend, config),
        evidence=evidence,
    )


# -- formatting helpers for the reasons --------------------------------------------------------------------


def _num(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:.4g}"


def _secs(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"


def _format_bounds(tolerance: Tolerance) -> str:
    parts = []
    if tolerance.min is not None:
        parts.append(f"min {_num(tolerance.min)}")
    if tolerance.max is not None:
        parts.append(f"max {_num(tolerance.max)}")
    return ", ".join(parts)
