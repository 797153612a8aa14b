"""Calibrate a rollout's judge checks on the service's own history: A/A tests on its stable pods.

The judge's bound ("a good version is rolled back with probability at most alpha") holds under a model;
this module measures it on the data a user actually has. Between ``start`` and ``end`` it reads each
judge check's per-pod request and error counters of the stable **once** (one range query per series at
the check's look interval, a few more only where a window has more points than Prometheus returns in one
answer), and then, in memory, replays the spec many times as an A/A test:

* **a split**: the stable's pods are shuffled (seeded) and the first ``k`` become a pseudo-canary, the
  others (or, for ``compareTo: baseline``, the next ``k``) its control. ``k`` follows each ``setWeight``
  the way the replicas router turns a weight into pods (``round(pods * weight / 100)``, at least one pod
  and at least one left for the control), so the traffic split is whatever those pods served;
* **a start**: a look on the grid, drawn (seeded) so that the hour before it is inside the window when the
  window allows: the judge reads that hour for its dispersion and pod spread as the worker's first look
  does (``dispersion.estimate``; the stated default when it is too short, as in a rollout);
* **the spec's steps**: each analysis step (and each background judge check, at every analysis step) runs
  the check's looks at the step's weight for the step's duration (or ``count`` looks), folded by the
  judge's pure entry points ``judge_update`` / ``judge_finish`` with the rollout's bound split over its judge
  checks, as ``replay`` and the worker fold them. A failure is a rollback: identical versions, so a
  **false rollback**. Each check walks the steps on its own decisions; the rollout's rate counts a split
  once when any check rolled it back.

Reported per check: the false-rollback rate with its 95 % Clopper-Pearson interval next to the check's
bound; the dispersion between looks (with a 95 % jackknife interval over ten blocks of the window: the
Pearson statistic of clustered errors is not chi-square) and the pods' spread (95 % interval from the
chi-square of the pods' log rates, the sampling part removed as in the estimate), both over the whole
window; and per analysis step the smallest error ratio the step catches at that traffic with 95 %
probability within its duration (``judge_plan.smallest_caught``), the pods' margin included.

Rules: only count judges are calibrated (latency and gauge judges are listed as not calibrated, and why);
a check needs at least two stable pods; a window shorter than one rollout is refused. The query estimate
is checked against the replay limit before anything is asked of Prometheus.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from orchestrator.errors import MetricError
from orchestrator.gates.dispersion import (
    MIN_LOOKS,
    ROLLBACK_SHARE,
    Noise,
    PodMoments,
    estimate,
    margin,
)
from orchestrator.gates.judge import JudgeLook, JudgeState, Outcome, Side, judge_finish, judge_update
from orchestrator.gates.prometheus import Series
from orchestrator.gates.template import render, track_selector
from orchestrator.specs.canary import AnalysisStep, CanaryRollout, SetWeightStep
from orchestrator.specs.checks import Check
from orchestrator.specs.judge import JudgeKind
from orchestrator.specs.promql import image_version

Array = NDArray[np.float64]

DEFAULT_SPLITS = 200
MAX_POINTS = 11_000
"""Prometheus answers at most 11,000 points per series in one range query: longer windows take several."""
HISTORY_SECONDS = 3600.0
"""What the worker's first look reads of the stable's history (``counts.NOISE_WINDOW``)."""
BLOCKS = 10


class RangeProvider(Protocol):
    """Anything that answers a PromQL range query (``PrometheusProvider``)."""

    def query_range(self, promql: str, start: datetime, end: datetime, step_seconds: float) -> list[Series]: ...


class Interval(BaseModel):
    low: float
    high: float


class StepReach(BaseModel):
    """What one analysis step can catch at the service's traffic."""

    step: int
    weight: int
    canary_pods: int
    control_pods: int
    seconds: float
    smallest_caught: float | None
    """The smallest error ratio rolled back within the step with 95 % probability; None: none up to 20x."""


class CheckCalibration(BaseModel):
    check: str
    calibrated: bool = True
    reason: str = ""
    splits: int = 0
    rollbacks: int = 0
    promotions: int = 0
    not_enough_traffic: int = 0
    false_rollback_rate: float | None = None
    interval: Interval | None = None
    bound: float | None = None
    pods: int = 0
    looks: int = 0
    requests_per_second: float | None = None
    error_rate: float | None = None
    dispersion: float | None = None
    dispersion_interval: Interval | None = None
    pod_spread: float | None = None
    pod_spread_interval: Interval | None = None
    steps: list[StepReach] = Field(default_factory=list)


class Calibration(BaseModel):
    name: str
    start: datetime = Field(serialization_alias="from")
    end: datetime = Field(serialization_alias="to")
    splits: int
    seed: int
    queries: int
    rollout_bound: float | None = None
    rollout_rollbacks: int = 0
    rollout_rate: float | None = None
    rollout_interval: Interval | None = None
    checks: list[CheckCalibration] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> Interval:
    """The exact binomial interval (scipy's ``binomtest``)."""
    from scipy.stats import binomtest

    ci = binomtest(successes, trials).proportion_ci(confidence_level=level, method="exact")
    return Interval(low=float(ci.low), high=float(ci.high))


# -- the plan of a calibration: which checks run in which steps, and what it reads -----------------


class _Stage:
    def __init__(self, index: int, weight: int, seconds: float, checks: list[Check]) -> None:
        self.index, self.weight, self.seconds, self.checks = index, weight, seconds, checks


def _stages(spec: CanaryRollout) -> list[_Stage]:
    """Each analysis step with its weight, its length and its judge checks (background ones included)."""
    out: list[_Stage] = []
    weight = 0
    background = [c for c in spec.spec.background_checks if c.judge is not None]
    for index, step in enumerate(spec.spec.steps, start=1):
        if isinstance(step, SetWeightStep):
            weight = step.set_weight if isinstance(step.set_weight, int) else weight
            continue
        if not isinstance(step, AnalysisStep):
            continue
        checks = [c for c in step.analysis.checks if c.judge is not None] + background
        if not checks or weight <= 0:
            continue
        if step.analysis.duration is not None:
            seconds = step.analysis.duration.total_seconds()
        else:
            seconds = max((c.count or 1) * c.interval.total_seconds() for c in checks)
        out.append(_Stage(index, weight, seconds, checks))
    return out


def _judged(spec: CanaryRollout) -> list[Check]:
    seen: dict[str, Check] = {}
    for stage in _stages(spec):
        for check in stage.checks:
            seen.setdefault(check.name, check)
    return list(seen.values())


def _variables(spec: CanaryRollout) -> dict[str, str]:
    image = spec.spec.change.image or ""
    return {"namespace": spec.spec.target.namespace, "app": spec.spec.target.deployment,
            "target": spec.spec.target.deployment, "image": image, "version": image_version(image),
            "track": "stable"}  # fmt: skip


def _stable_query(check: Check, metric: str, variables: Mapping[str, str]) -> str:
    assert check.judge is not None
    template = check.judge.queries()[metric][1]  # the control side's template, rendered for the stable
    return render(template, variables, {"track_selector": track_selector("stable")})


def _chunks(start: datetime, end: datetime, step: float) -> list[tuple[datetime, datetime]]:
    points = int((end - start).total_seconds() // step) + 1
    per = MAX_POINTS - 1
    out = []
    first = 0
    while first < points:
        last = min(points - 1, first + per - 1)
        out.append((start + timedelta(seconds=first * step), start + timedelta(seconds=last * step)))
        first = last + 1
    return out


def estimate_queries(spec: CanaryRollout, start: datetime, end: datetime) -> int:
    """How many range queries calibrating ``spec`` between ``start`` and ``end`` sends; no I/O."""
    variables = _variables(spec)
    reads: set[tuple[str, float]] = set()
    for check in _judged(spec):
        assert check.judge is not None
        if check.judge.kind is not JudgeKind.COUNTS:
            continue
        for metric in ("requests", "errors"):
            reads.add((_stable_query(check, metric, variables), check.interval.total_seconds()))
    return sum(len(_chunks(start, end, step)) for _, step in reads)


def check_budget(spec: CanaryRollout, start: datetime, end: datetime, max_queries: int | None) -> int:
    estimate_ = estimate_queries(spec, start, end)
    if max_queries is not None and estimate_ > max_queries:
        raise MetricError(
            f"this window would send {estimate_:,} queries (limit {max_queries:,}): narrow --from/--to, "
            "or raise the limit with --max-queries or ORCHESTRATOR_REPLAY_MAX_QUERIES", retryable=False)
    return estimate_


# -- reading: one range query per series, then per-pod increments on the look grid ----------------


def _pod(labels: Mapping[str, str]) -> tuple[str, str]:
    return labels.get("pod", ""), labels.get("instance", "")


def _read(provider: RangeProvider, query: str, start: datetime, end: datetime, step: float,
          grid: Array) -> dict[tuple[str, str], Array]:
    """Cumulative values per pod on ``grid`` (NaN where the pod had no sample)."""
    out: dict[tuple[str, str], Array] = {}
    t0 = start.timestamp()
    for first, last in _chunks(start, end, step):
        for series in provider.query_range(query, first, last, step):
            values = out.setdefault(_pod(series.labels), np.full(grid.size, np.nan))
            for at, value in series.points:
                index = round((at - t0) / step)
                if 0 <= index < grid.size and math.isfinite(value):
                    values[index] = value if math.isnan(values[index]) else values[index] + value
    return out


def _increments(cumulative: Array) -> Array:
    """Per-look increments of one pod's counter: a reset counts from zero, a missing reading counts nothing."""
    previous, current = cumulative[:-1], cumulative[1:]
    delta = np.where(current < previous, current, current - previous)
    return np.nan_to_num(delta, nan=0.0)


class _History:
    """One check's per-pod, per-look requests ``n`` and errors ``e`` (pods x looks)."""

    def __init__(self, n: Array, e: Array, step: float) -> None:
        self.n, self.e, self.step = n, e, step

    def moments(self, first: int, last: int) -> list[PodMoments]:
        n, e = self.n[:, first:last], self.e[:, first:last]
        looks = float(last - first)
        return [PodMoments(looks=looks, n=float(n[p].sum()), e=float(e[p].sum()), nn=float((n[p] ** 2).sum()),
                           ee=float((e[p] ** 2).sum()), en=float((n[p] * e[p]).sum()))
                for p in range(n.shape[0])]  # fmt: skip


def _history(provider: RangeProvider, check: Check, variables: Mapping[str, str], start: datetime,
             end: datetime) -> _History:
    step = check.interval.total_seconds()
    grid = np.arange(start.timestamp(), end.timestamp() + step / 2, step)
    requests = _read(provider, _stable_query(check, "requests", variables), start, end, step, grid)
    errors = _read(provider, _stable_query(check, "errors", variables), start, end, step, grid)
    pods = sorted(p for p, values in requests.items() if np.nansum(_increments(values)) > 0)
    zeros = np.zeros(grid.size)
    n = np.array([_increments(requests[p]) for p in pods]).reshape(len(pods), max(grid.size - 1, 0))
    # An error series appears with the first error: missing counts as zero once the requests exist.
    e = np.array([_increments(np.where(np.isnan(errors.get(p, zeros)) & ~np.isnan(requests[p]), 0.0,
                                       errors.get(p, zeros))) for p in pods]).reshape(n.shape)  # fmt: skip
    return _History(n, np.minimum(e, n), step)


# -- estimates with their intervals ----------------------------------------------------------------


def _dispersion_interval(history: _History) -> tuple[float, Interval]:
    """Phi over the whole window, and a 95 % delete-one-block jackknife interval over ``BLOCKS`` blocks."""
    from scipy.stats import t as student_t

    looks = history.n.shape[1]
    whole = estimate(history.moments(0, looks)).dispersion
    edges = np.linspace(0, looks, BLOCKS + 1).astype(int)
    leave_out = []
    for b in range(BLOCKS):
        kept = np.r_[0:edges[b], edges[b + 1]:looks]
        sub = _History(history.n[:, kept], history.e[:, kept], history.step)
        leave_out.append(estimate(sub.moments(0, kept.size)).dispersion)
    jack = np.array(leave_out)
    se = math.sqrt((BLOCKS - 1) / BLOCKS * float(((jack - jack.mean()) ** 2).sum()))
    t = float(student_t.ppf(0.975, BLOCKS - 1))
    return whole, Interval(low=max(1.0, whole - t * se), high=whole + t * se)


def _spread_interval(history: _History, phi: float) -> tuple[float, Interval]:
    """Sigma over the whole window, and a 95 % interval from the chi-square of the pods' log rates."""
    from scipy.stats import chi2

    n, e = history.n.sum(axis=1), history.e.sum(axis=1)
    pods = n.size
    log_rate = np.log((e + 0.5) / (n + 0.5))
    var = float(np.var(log_rate, ddof=1))
    sampling = float(np.mean(phi / (e + 0.5)))
    sigma = math.sqrt(max(var - sampling, 0.0))
    df = pods - 1
    low = math.sqrt(max(var * df / float(chi2.ppf(0.975, df)) - sampling, 0.0))
    high = math.sqrt(max(var * df / float(chi2.ppf(0.025, df)) - sampling, 0.0))
    return sigma, Interval(low=low, high=high)


# -- the A/A runs ---------------------------------------------------------------------------------


def _pods_for(weight: int, pods: int, baseline: bool) -> tuple[int, int]:
    """(canary pods, control pods) for ``weight``, as the replicas router would size them."""
    k = min(max(1, round(pods * weight / 100)), pods - 1)
    if baseline:
        k = max(1, min(k, pods // 2))
        return k, k
    return k, pods - k


def _run(check: Check, history: _History, stages: list[_Stage], order: NDArray[np.int64], begin: int, alpha: float,
         judges: int, at0: datetime) -> Outcome:
    """One A/A rollout of ``check`` from look ``begin`` with pods in ``order``: its final outcome."""
    assert check.judge is not None
    step = history.step
    baseline = check.judge.compare_to == "baseline"
    pods = history.n.shape[0]
    first_history = max(0, begin - int(HISTORY_SECONDS // step))
    noise: Noise = estimate(history.moments(first_history, begin)) if begin - first_history >= MIN_LOOKS else Noise()
    t = begin
    outcome = Outcome.SUCCESSFUL
    for stage in stages:
        if check not in stage.checks:
            continue
        k, m = _pods_for(stage.weight, pods, baseline)
        canary, control = order[:k], order[k:k + m]
        looks = max(1, math.ceil((stage.seconds - check.initial_delay.total_seconds()) / step))
        state = JudgeState()
        at = at0 + timedelta(seconds=t * step)
        history_n = float(history.n[control, first_history:begin].sum())
        history_e = float(history.e[control, first_history:begin].sum())
        look = JudgeLook(at=at, start=True, noise=noise, pods=(k, m),
                         control_history=[(0.0, history_n), (1.0, history_e)])  # fmt: skip
        state, _ = judge_update(check, state, look, alpha=alpha, checks=judges)
        used = 0
        for i in range(looks):
            index = t + i
            if index >= history.n.shape[1]:
                break
            used = i + 1
            look = JudgeLook(
                at=at + timedelta(seconds=(i + 1) * step), pods=(k, m),
                canary=Side(requests=float(history.n[canary, index].sum()),
                            errors=float(history.e[canary, index].sum())),
                control=Side(requests=float(history.n[control, index].sum()),
                             errors=float(history.e[control, index].sum())))  # fmt: skip
            state, verdict = judge_update(check, state, look, alpha=alpha, checks=judges)
            if verdict.outcome is not Outcome.RUNNING:
                break
        t += used  # the next step starts when this one decided, as in a rollout
        final = judge_finish(check, state, alpha=alpha, checks=judges)
        if final.outcome is Outcome.FAILED:
            return Outcome.FAILED
        if final.outcome is Outcome.NOT_ENOUGH_TRAFFIC:
            outcome = Outcome.NOT_ENOUGH_TRAFFIC
    return outcome


def _rollout_looks(check: Check, stages: list[_Stage]) -> int:
    step = check.interval.total_seconds()
    return sum(math.ceil(s.seconds / step) + 1 for s in stages if check in s.checks)


def calibrate(spec: Any, provider: RangeProvider, start: datetime, end: datetime, *, splits: int = DEFAULT_SPLITS,
              seed: int = 0, max_queries: int | None = None) -> Calibration:
    """A/A-test ``spec``'s count judges on the stable's history between ``start`` and ``end``.

    ``MetricError`` (not retryable) for a spec, window or budget that cannot be calibrated; Prometheus'
    own errors propagate.
    """
    from orchestrator.gates.judge import alpha_per_check, rollout_alpha
    from orchestrator.gates.judge_plan import smallest_caught

    if not isinstance(spec, CanaryRollout):
        raise MetricError(f"calibrate takes a CanaryRollout spec, not {getattr(spec, 'kind', '?')}", retryable=False)
    if end <= start:
        raise MetricError("--to must be after --from", retryable=False)
    stages = _stages(spec)
    checks = _judged(spec)
    if not checks:
        raise MetricError("the spec has no judge check in an analysis step after a setWeight: nothing to calibrate",
                          retryable=False)
    queries = check_budget(spec, start, end, max_queries)
    all_checks = [*spec.spec.background_checks]
    all_checks += [c for s in spec.spec.steps if isinstance(s, AnalysisStep) for c in s.analysis.checks]
    bound, judges = rollout_alpha(all_checks)
    alpha = alpha_per_check(bound, judges)
    result = Calibration(name=spec.metadata.name, start=start, end=end, splits=splits, seed=seed, queries=queries,
                         rollout_bound=bound)  # fmt: skip
    variables = _variables(spec)
    rng = np.random.default_rng(seed)
    failed_any = np.zeros(splits, dtype=bool)
    window = (end - start).total_seconds()
    draws = rng.random((splits, 2))  # one (start, shuffle) per split, shared by every check
    read: dict[tuple[str, ...], _History] = {}
    for check in checks:
        assert check.judge is not None
        if check.judge.kind is not JudgeKind.COUNTS:
            result.checks.append(CheckCalibration(
                check=check.name, calibrated=False,
                reason=f"a {check.judge.kind.value} judge is not calibrated yet (only error counts are)"))
            continue
        key = (_stable_query(check, "requests", variables), _stable_query(check, "errors", variables),
               str(check.interval))
        if key not in read:  # checks on the same series share one read of it
            read[key] = _history(provider, check, variables, start, end)
        history = read[key]
        pods, looks = history.n.shape
        step = check.interval.total_seconds()
        need = _rollout_looks(check, stages)
        if pods < 2:
            result.checks.append(CheckCalibration(check=check.name, calibrated=False, pods=pods, looks=looks,
                                                  reason=f"the stable has {pods} pod(s) with traffic in the window: "
                                                         "an A/A split needs at least 2"))  # fmt: skip
            continue
        if need > looks:
            raise MetricError(f"check {check.name}: one rollout takes {need * step:.0f} s, longer than the window "
                              f"({window:.0f} s): widen --from/--to", retryable=False)  # fmt: skip
        if history.e.sum() <= 0:
            result.checks.append(CheckCalibration(check=check.name, calibrated=False, pods=pods, looks=looks,
                                                  reason="the stable served no error in the window: no error ratio "
                                                         "to judge"))  # fmt: skip
            continue
        earliest = min(int(HISTORY_SECONDS // step), looks - need)
        if earliest < int(HISTORY_SECONDS // step):
            result.notes.append(f"{check.name}: the window leaves less than an hour of history before some starts: "
                                "those runs use what there is, or the stated default noise, as a rollout would")
        counts = {Outcome.FAILED: 0, Outcome.SUCCESSFUL: 0, Outcome.NOT_ENOUGH_TRAFFIC: 0}
        for split in range(splits):
            begin = earliest + int(draws[split, 0] * (looks - need - earliest + 1))
            order = np.random.default_rng([seed, split]).permutation(pods)
            outcome = _run(check, history, stages, order, begin, alpha, judges, start)
            counts[outcome] = counts.get(outcome, 0) + 1
            failed_any[split] |= outcome is Outcome.FAILED
        phi, phi_ci = _dispersion_interval(history)
        sigma, sigma_ci = _spread_interval(history, phi)
        seconds = looks * step
        rps = float(history.n.sum()) / seconds
        rate = float(history.e.sum() / history.n.sum())
        reach = []
        for stage in stages:
            if check not in stage.checks:
                continue
            k, m = _pods_for(stage.weight, pods, check.judge.compare_to == "baseline")
            shift = float(margin(sigma, k, m, alpha * ROLLBACK_SHARE, pods))
            reach.append(StepReach(step=stage.index, weight=stage.weight, canary_pods=k, control_pods=m,
                                   seconds=stage.seconds, smallest_caught=smallest_caught(
                                       rps * k / pods, rps * m / pods, rate, tolerance=check.judge.effective_tolerance,
                                       interval=step, alpha=alpha * (1 - ROLLBACK_SHARE if sigma > 0 else 1),
                                       seconds=stage.seconds, dispersion=phi, margin=shift)))  # fmt: skip
        rollbacks = counts[Outcome.FAILED]
        result.checks.append(CheckCalibration(
            check=check.name, splits=splits, rollbacks=rollbacks, promotions=counts[Outcome.SUCCESSFUL],
            not_enough_traffic=counts[Outcome.NOT_ENOUGH_TRAFFIC], false_rollback_rate=rollbacks / splits,
            interval=clopper_pearson(rollbacks, splits), bound=alpha, pods=pods, looks=looks,
            requests_per_second=rps, error_rate=rate, dispersion=phi, dispersion_interval=phi_ci,
            pod_spread=sigma, pod_spread_interval=sigma_ci, steps=reach))  # fmt: skip
    if any(c.calibrated for c in result.checks):
        total = int(failed_any.sum())
        result.rollout_rollbacks = total
        result.rollout_rate = total / splits
        result.rollout_interval = clopper_pearson(total, splits)
    return result


# -- rendering ------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2g} %"


def to_text(c: Calibration) -> str:
    lines = [f"calibration of CanaryRollout {c.name} on the stable's history from {c.start.isoformat()} to "
             f"{c.end.isoformat()}: {c.splits} A/A splits (seed {c.seed}), {c.queries} range queries"]
    for check in c.checks:
        if not check.calibrated:
            lines.append(f"{check.check}: not calibrated: {check.reason}")
            continue
        assert check.interval is not None and check.dispersion_interval is not None
        assert check.pod_spread_interval is not None and check.pod_spread is not None
        lines.append(
            f"{check.check}: identical versions rolled back {check.rollbacks}/{check.splits} = "
            f"{_pct(check.false_rollback_rate)} (95 % interval {_pct(check.interval.low)}-"
            f"{_pct(check.interval.high)}; the check's bound {_pct(check.bound)}); promoted {check.promotions}, "
            f"not enough traffic {check.not_enough_traffic}")
        lines.append(
            f"  {check.pods} stable pods, {check.looks} looks, {check.requests_per_second:.3g} rps, "
            f"{_pct(check.error_rate)} errors; errors {check.dispersion:.2g}x as variable between looks as "
            f"independent requests (95 % {check.dispersion_interval.low:.2g}-{check.dispersion_interval.high:.2g}); "
            f"pods differ by ±{check.pod_spread * 100:.0f} % (95 % {check.pod_spread_interval.low * 100:.0f}-"
            f"{check.pod_spread_interval.high * 100:.0f} %)")
        for s in check.steps:
            caught = (f"catches a {s.smallest_caught:.3g}x error ratio" if s.smallest_caught is not None
                      else "catches no error ratio up to 20x")
            lines.append(f"  step {s.step} at {s.weight} % weight ({s.canary_pods} canary vs {s.control_pods} "
                         f"control pods, {s.seconds:.0f} s): {caught} within the step (95 % of runs)")
    if c.rollout_rate is not None and c.rollout_interval is not None:
        lines.append(f"rollout: identical versions rolled back {c.rollout_rollbacks}/{c.splits} = "
                     f"{_pct(c.rollout_rate)} (95 % interval {_pct(c.rollout_interval.low)}-"
                     f"{_pct(c.rollout_interval.high)}; bound {_pct(c.rollout_bound)})")
    lines += [f"note: {n}" for n in c.notes]
    return "\n".join(lines) + "\n"


def to_json(c: Calibration) -> str:
    return c.model_dump_json(indent=2, by_alias=True)
