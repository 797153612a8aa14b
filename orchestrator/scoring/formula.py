"""The resilience score: 0-100 per run, aggregated per service. Pure functions, no I/O.

Per run (``score_run``), the runbook's five weighted factors::

    score = 100 · C · min(K, Σᵢ wᵢ·sᵢ / Σᵢ wᵢ)    over the factors i that apply

    detection speed      0.2   fault start -> first failing check / firing detection query, vs objective
    auto-recovery        0.3   the steady state came back by itself while the fault was still active
    containment          0.2   declared blast radius / what was actually reached (touched + seen affected)
    customer impact      0.2   share of requests failed or over the latency objective during the run
    recovery time        0.1   revert -> steady state again, vs the recovery objective

    C ∈ {0, 1}    escape gate: 0 when the run touched a target outside its allowed set or over its limit
    K             NEVER_RECOVERED_CAP when the steady state never came back, else 1

A factor without evidence (no detection objective, no impact queries) does not apply: its weight
is shared by the others in proportion. Deviation (tolerance used) and error budget burned are
shown as evidence rows with no weight. The weights are ``ScoringConfig``'s, which a team may set
in a scoring config file (non-negative, summing to 1; ``load_config``).

A score never claims more than was measured::

    coverage = Σᵢ wᵢ                 over the factors that were measured (the weights sum to 1)
    low      = 100 · C · min(K, Σᵢ wᵢ·sᵢ)                 the unmeasured factors scored 0
    high     = 100 · C · min(K, Σᵢ wᵢ·sᵢ + 1 - coverage)  the unmeasured factors scored 1

The score always lies in [low, high]. Its status word (RESILIENT, DEGRADED, FRAGILE) is given
only when coverage ≥ ``min_coverage`` (default 80 %); below it the status is NOT ENOUGH EVIDENCE.
ESCAPED is the exception: an escaped radius was measured and pins the range at 0-0, so nothing
left unmeasured could change the verdict.

Per service (``score_service``)::

    fᵣ = 2^(-age_r / HALF_LIFE)                                  freshness of run r
    per experiment e:  mₑ = Σ fᵣ·xᵣ / Σ fᵣ,  sdₑ = √(Σ fᵣ·(xᵣ - mₑ)² / Σ fᵣ)
                       Eₑ = max(0, mₑ - REPEATABILITY_K · sdₑ),  Wₑ = min(1, Σ fᵣ)
    service = Σ Wₑ·Eₑ / max(EVIDENCE_TARGET, Σ Wₑ)
    coverage = Σ Wₑ·cₑ / Σ Wₑ,  cₑ = Σ fᵣ·coverageᵣ / Σ fᵣ     each run weighted as it weighs in the score

The service's status word needs the same ``min_coverage`` as a run's.

Refused and failed runs put no fault on the service, so they are kept and shown but not
scored. Every score is computed from the stored record, so old runs are re-scored by the
formula in force. The defaults are explained in docs/scoring.md.
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator.scoring.model import CheckEvidence, Outcome, RunRecord, Tolerance
from orchestrator.specs.duration import Duration

# -- constants ---------------------------------------------------------------------------------------------

WEIGHT_DETECTION = 0.2
"""How fast the fault was noticed: an unnoticed fault is an incident that grows."""
WEIGHT_AUTO_RECOVERY = 0.3
"""The platform healing itself under the fault is the resilience the experiment is about: the most weight."""
WEIGHT_CONTAINMENT = 0.2
"""A fault that spreads beyond what was declared is a failure of isolation."""
WEIGHT_IMPACT = 0.2
"""What customers felt: the share of their requests that failed or were too slow."""
WEIGHT_RECOVERY = 0.1
"""How long the steady state took to return once the fault was gone."""

FACTORS = ("detection", "auto-recovery", "containment", "impact", "recovery")
"""The weighted factors, in the order reports show them."""

RECOVERY_ZERO_AT = 3.0
"""Recovery sub-score falls linearly from 1 at the objective to 0 at this multiple of it."""
DETECTION_ZERO_AT = 3.0
"""Detection sub-score falls linearly from 1 at the objective to 0 at this multiple of it."""
AUTO_RECOVERY_ZERO_AT = 3.0
"""Self-healing slower than the recovery objective loses credit, to 0 at this multiple of it."""
IMPACT_ZERO_AT = 0.10
"""Customer impact scores 0 when a tenth of the requests during the run failed or were too slow."""
BUDGET_MAX_BURN = 0.05
"""The budget evidence row reads 0 at 5 % of the budget burned, as much as a ticket-worthy incident
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
MIN_COVERAGE = 0.8
"""Share of the factors' weight that must be measured before a score earns a status word: below it, one
factor in five (by the runbook's weights) unmeasured could move the score across a whole band."""
TREND_WINDOW = 3
"""The trend direction compares the mean of the last runs with the mean of the runs before them."""
TREND_EPSILON = 5.0
"""Points of change below which the trend is called steady."""

SCORED_OUTCOMES = frozenset({Outcome.COMPLETED, Outcome.BREACHED, Outcome.ABORTED})


class Weights(BaseModel):
    """The five factors' weights: each non-negative, together 1."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)

    detection: float = Field(default=WEIGHT_DETECTION, ge=0)
    auto_recovery: float = Field(default=WEIGHT_AUTO_RECOVERY, ge=0, alias="autoRecovery")
    containment: float = Field(default=WEIGHT_CONTAINMENT, ge=0)
    impact: float = Field(default=WEIGHT_IMPACT, ge=0, alias="customerImpact")
    recovery: float = Field(default=WEIGHT_RECOVERY, ge=0, alias="recoveryTime")

    @model_validator(mode="after")
    def _sum_to_one(self) -> Weights:
        total = self.detection + self.auto_recovery + self.containment + self.impact + self.recovery
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"weights must sum to 1, these sum to {total:g}")
        return self

    def of(self, factor: str) -> float:
        return float(getattr(self, factor.replace("-", "_")))


class ScoringConfig(BaseModel):
    """Every constant of the formula, overridable (a team's weights, a longer half-life...).

    Every number is finite and bounded by what the formula can mean (scores are 0-100, shares 0-1), so
    a config cannot turn a report into NaN or ask for a window of 10^20 runs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)

    weights: Weights = Field(default_factory=Weights)
    recovery_zero_at: float = Field(default=RECOVERY_ZERO_AT, gt=1, le=100, alias="recoveryZeroAt")
    detection_zero_at: float = Field(default=DETECTION_ZERO_AT, gt=1, le=100, alias="detectionZeroAt")
    auto_recovery_zero_at: float = Field(default=AUTO_RECOVERY_ZERO_AT, gt=1, le=100, alias="autoRecoveryZeroAt")
    impact_zero_at: float = Field(default=IMPACT_ZERO_AT, gt=0, le=1, alias="impactZeroAt")
    budget_max_burn: float = Field(default=BUDGET_MAX_BURN, gt=0, le=1, alias="budgetMaxBurn")
    never_recovered_cap: float = Field(default=NEVER_RECOVERED_CAP, ge=0, le=1, alias="neverRecoveredCap")
    half_life: Duration = Field(default=FRESHNESS_HALF_LIFE, alias="halfLife")
    repeatability_k: float = Field(default=REPEATABILITY_K, ge=0, le=10, alias="repeatabilityK")
    evidence_target: float = Field(default=EVIDENCE_TARGET, gt=0, le=1000, alias="evidenceTarget")
    resilient_at: float = Field(default=RESILIENT_AT, ge=0, le=100, alias="resilientAt")
    degraded_at: float = Field(default=DEGRADED_AT, ge=0, le=100, alias="degradedAt")
    min_coverage: float = Field(default=MIN_COVERAGE, ge=0, le=1, allow_inf_nan=False, alias="minCoverage")
    trend_window: int = Field(default=TREND_WINDOW, ge=1, le=1000, alias="trendWindow")
    trend_epsilon: float = Field(default=TREND_EPSILON, ge=0, le=100, alias="trendEpsilon")

    @model_validator(mode="after")
    def _sane(self) -> ScoringConfig:
        if self.half_life < timedelta(hours=1):
            raise ValueError("halfLife must be at least 1h")
        if self.degraded_at > self.resilient_at:
            raise ValueError("degradedAt must not be above resilientAt")
        return self

    def weight(self, name: str) -> float:
        return self.weights.of(name)


DEFAULT_CONFIG = ScoringConfig()


class Status(StrEnum):
    """The one word a reviewer reads first."""

    RESILIENT = "RESILIENT"
    DEGRADED = "DEGRADED"
    FRAGILE = "FRAGILE"
    ESCAPED = "ESCAPED"
    NOT_ENOUGH_EVIDENCE = "NOT ENOUGH EVIDENCE"
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
    coverage: float = 0.0
    """Share of the factors' weight that was measured, 0-1 (0 for a run that is not scored)."""
    low: float | None = None
    """The score had every unmeasured factor scored 0 (None when not scored)."""
    high: float | None = None
    """The score had every unmeasured factor scored 1 (None when not scored)."""


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
    coverage: float = 0.0
    """Freshness-weighted mean coverage of the experiment's scored runs."""


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
    coverage: float = 0.0
    """Σ Wₑ·cₑ / Σ Wₑ: the runs' coverage, each run weighted as it weighs in the score (0 with no scored run)."""


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
        return None, "no detection objective, or nothing needed detecting: weight shared by the other terms"
    objective = _secs(run.detection_objective)
    if run.detection_time is None:
        return 0.0, f"fault never detected (objective {objective})"
    value = _decay(run.detection_time, run.detection_objective, config.detection_zero_at)
    return value, f"detected after {_secs(run.detection_time)} (objective {objective})"


def budget_subscore(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> tuple[float | None, str]:
    """Error budget burned, as evidence (no weight): 1 - burned / budget_max_burn."""
    if run.error_budget is None:
        return None, "no error budget figure (none declared, or not read at both ends)"
    burned = run.error_budget.burned
    value = max(0.0, 1.0 - burned / config.budget_max_burn)
    return value, (
        f"burned {burned * 100:.2f} % of the {run.error_budget.slo_target * 100:g} % SLO budget "
        f"(0 at {config.budget_max_burn * 100:g} %)"
    )


def _breaks(check: CheckEvidence, reference: float, value: float | None) -> bool:
    return normalised_deviation(value, reference, check.tolerance) >= 1.0


def check_auto_recovery(check: CheckEvidence, objective: timedelta, zero_at: float) -> tuple[float, str]:
    """Did this check come back inside its tolerance by itself while the fault was still active?"""
    if not check.during:
        return 0.0, f"{check.name}: no measurement during the fault (worst case)"
    reference = _reference(check)
    if reference is None:
        return 0.0, f"{check.name}: no steady-state value before the fault and no baseline (worst case)"
    during = sorted(check.during, key=lambda m: m.at)
    broken = [i for i, m in enumerate(during) if _breaks(check, reference, m.value)]
    if not broken:
        return 1.0, f"{check.name}: held inside its tolerance through the fault: nothing to recover from"
    first, last = during[broken[0]], broken[-1]
    if last == len(during) - 1:
        return 0.0, (f"{check.name}: out of tolerance from {first.at:%H:%M:%S} until the fault was removed: "
                     "no recovery by itself")
    healed = during[last + 1].at - first.at
    value = _decay(healed, objective, zero_at)
    return value, (f"{check.name}: out of tolerance at {first.at:%H:%M:%S}, back by itself after "
                   f"{_secs(healed)} with the fault still active (objective {_secs(objective)})")


def auto_recovery_subscore(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> tuple[float, str]:
    """The weakest check's self-recovery: the steady state is back only when every check is."""
    if not run.checks:
        return 0.0, "no steady-state checks recorded (worst case)"
    results = [check_auto_recovery(c, run.recovery_objective, config.auto_recovery_zero_at) for c in run.checks]
    value, why = min(results, key=lambda r: r[0])
    return value, why


def escaped(run: RunRecord) -> str | None:
    """Why the run left what it was allowed to touch (the gate), or None."""
    radius = run.blast_radius
    touched = len(set(radius.touched))
    if radius.escaped:
        return f"touched targets outside the allowed set: {', '.join(radius.escaped)}"
    if radius.max_targets is not None and touched > radius.max_targets:
        return f"touched {touched} targets, limit {radius.max_targets}"
    return None


def containment(run: RunRecord) -> tuple[bool, str]:
    """The escape gate alone (kept for callers that only need pass/fail)."""
    why = escaped(run)
    return (False, why) if why else (True, containment_subscore(run)[1])


def containment_subscore(run: RunRecord) -> tuple[float, str]:
    """Declared radius over the actual one: 1 while the run reached no more than it declared."""
    why = escaped(run)
    if why:
        return 0.0, f"ESCAPED: {why}"
    radius = run.blast_radius
    touched = set(radius.touched)
    actual = radius.actual
    declared = radius.declared
    extra = len(actual) - len(touched)
    seen = (f" + {extra} more seen affected ({', '.join(sorted(set(actual) - touched))})" if extra
            else (", none other seen affected" if radius.affected is not None else ", affected not measured"))
    reached = f"{len(actual)} reached ({len(touched)} touched{seen}) vs {declared} declared"
    if len(actual) <= declared:
        return 1.0, f"{reached}: contained"
    value = declared / len(actual) if actual else 1.0
    return value, f"{reached}: {declared}/{len(actual)}"


def impact_subscore(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> tuple[float | None, str]:
    """1 - share of requests failed or too slow during the run / impact_zero_at."""
    share = run.impact.share if run.impact is not None else None
    if run.impact is None or share is None:
        return None, "not measured (declare scoring.impact queries): weight shared by the other terms"
    parts = []
    if run.impact.failed_share is not None:
        parts.append(f"{run.impact.failed_share * 100:.2f} % of requests failed")
    if run.impact.slow_share is not None:
        parts.append(f"{run.impact.slow_share * 100:.2f} % over the latency objective")
    value = max(0.0, 1.0 - share / config.impact_zero_at)
    return value, (f"{', '.join(parts)} during the run ({run.impact.samples} samples): "
                   f"{share * 100:.2f} % affected, 0 at {config.impact_zero_at * 100:g} %")


# -- run score ---------------------------------------------------------------------------------------------


def covered(coverage: float, config: ScoringConfig = DEFAULT_CONFIG) -> bool:
    """Whether enough of the weight was measured for a status word."""
    return round(coverage, 9) >= config.min_coverage


def status_for(score: float | None, config: ScoringConfig = DEFAULT_CONFIG, coverage: float = 1.0) -> Status:
    if score is None:
        return Status.UNSCORED
    if not covered(coverage, config):
        return Status.NOT_ENOUGH_EVIDENCE
    if score >= config.resilient_at:
        return Status.RESILIENT
    if score >= config.degraded_at:
        return Status.DEGRADED
    return Status.FRAGILE


def _unscored(run: RunRecord, why: str, subscores: list[SubScore] | None = None) -> RunScore:
    return RunScore(
        run_id=run.run_id, experiment=run.experiment, service=run.service, outcome=run.outcome,
        at=run.ended_at, score=None, status=Status.UNSCORED,
        subscores=subscores or [SubScore(name="outcome", value=None, weight=None, why=why)], cap=None,
    )


def score_run(run: RunRecord, config: ScoringConfig = DEFAULT_CONFIG) -> RunScore:
    """Score one run; see the module docstring for the formula."""
    if run.outcome not in SCORED_OUTCOMES:
        return _unscored(run, f"run {run.outcome.value}: no fault was judged, so the run is not scored")

    raw: list[tuple[str, float | None, str]] = [
        ("detection", *detection_subscore(run, config)),
        ("auto-recovery", *auto_recovery_subscore(run, config)),
        ("containment", *containment_subscore(run)),
        ("impact", *impact_subscore(run, config)),
        ("recovery", *recovery_subscore(run, config)),
    ]
    total_weight = sum(config.weight(name) for name, value, _ in raw if value is not None)
    subscores: list[SubScore] = []
    weighted = 0.0
    # The same sum over the runbook's weights as they stand, unmeasured factors counted as 0: the low end.
    measured = sum(config.weight(name) * value for name, value, _ in raw if value is not None)
    for name, value, why in raw:
        if value is None or total_weight <= 0:
            subscores.append(SubScore(name=name, value=value, weight=None, why=why))
            continue
        weight = config.weight(name) / total_weight
        weighted += weight * value
        subscores.append(SubScore(name=name, value=value, weight=weight, why=why))
    # Evidence shown beside the factors, never weighted: how much tolerance the fault used, the budget it cost.
    for name, (value, why) in (("deviation", deviation_subscore(run)), ("budget", budget_subscore(run, config))):
        subscores.append(SubScore(name=name, value=value, weight=None, why=why))
    if total_weight <= 0:
        return _unscored(run, "no weighted factor has evidence for this run", subscores)

    # Rounded so that five weights summing to 1 in floating point read as 1, not 0.9999999999999999.
    coverage = round(min(1.0, total_weight), 9)
    low, high = measured, measured + (1.0 - coverage)
    cap: str | None = None
    why_escaped = escaped(run)
    if why_escaped:
        weighted, low, high, cap = 0.0, 0.0, 0.0, "blast radius escaped: the run scores 0"
    elif run.recovery_time is None:
        # The cap bounds every value the unmeasured factors could take, so it bounds both ends too.
        low, high = min(low, config.never_recovered_cap), min(high, config.never_recovered_cap)
        if weighted > config.never_recovered_cap:
            weighted = config.never_recovered_cap
            cap = f"never recovered: capped at {config.never_recovered_cap * 100:g}"
    score = 100.0 * weighted
    status = Status.ESCAPED if why_escaped else status_for(score, config, coverage)
    return RunScore(
        run_id=run.run_id,
        experiment=run.experiment,
        service=run.service,
        outcome=run.outcome,
        at=run.ended_at,
        score=score,
        status=status,
        subscores=subscores,
        cap=cap,
        coverage=coverage,
        low=100.0 * low,
        high=100.0 * high,
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
    if total <= 0.0:
        # Every freshness underflowed to 0 (runs more than ~1075 half-lives old): the experiment weighs
        # nothing, and its mean is the plain mean rather than 0/0.
        points, total = [(1.0, x) for _, x in points], float(len(points))
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
    coverage, _ = _weighted_mean_sd([(w, s.coverage) for (w, _), s in zip(points, scored, strict=True)])
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
        coverage=coverage,
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
    # Weighted as each run weighs in the score: Wₑ per experiment, freshness within it.
    coverage = sum(e.weight * e.coverage for e in experiments) / evidence if evidence > 0 else 0.0
    trend = [
        TrendPoint(at=s.at, run_id=s.run_id, experiment=s.experiment, score=s.score)
        for s in run_scores
        if s.score is not None
    ]
    return ServiceScore(
        service=service,
        as_of=now,
        score=score,
        status=status_for(score, config, coverage),
        experiments=experiments,
        runs=run_scores,
        trend=trend,
        direction=trend_direction(trend, config),
        evidence=evidence,
        coverage=coverage,
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
