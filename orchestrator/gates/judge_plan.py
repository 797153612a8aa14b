"""How long a judged step must run: the time to detect the declared tolerance with 95 % probability.

Count judges are sized on the errors; latency judges on the requests slower than the control's
quantile bucket (the judge's own events), with the tolerance's shift turned into a ratio of those
shares as the judge does (``judge.tail_bound``).

There is no closed form for the stopping time of a mixture e-process, so the answer is simulated with
the judge's own arithmetic (``counts_increment`` and ``decide_counts``): a few hundred seeded runs of
Poisson request counts and binomial errors per look, the canary's error rate set to the control's times
the tolerance, and the 95th percentile of the time to rollback read off. Seeded, hence the same answer
every time for the same traffic; pure, so the CLI and tests call it without Prometheus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from orchestrator.gates.judge import OFFSETS, center, counts_increment, decide_counts, rate_log_evidence

HORIZON = 8 * 3600.0


@dataclass(frozen=True)
class Sizing:
    seconds: float | None
    """Time by which ``probability`` of runs rolled back a regression of the tolerance; None past the horizon."""
    canary_rps: float
    control_rps: float
    error_rate: float
    ratio: float


def detection_time(
    canary_rps: float,
    control_rps: float,
    error_rate: float,
    ratio: float,
    *,
    tolerance: float = 1.2,
    interval: float = 10.0,
    alpha: float = 0.01,
    probability: float = 0.95,
    runs: int = 200,
    seed: int = 0,
    horizon: float = HORIZON,
    dispersion: float = 1.0,
) -> Sizing:
    """Seconds until ``probability`` of simulated canaries with ``ratio`` times the errors are decided the right
    way: rolled back when ``ratio`` is beyond ``tolerance``, promoted when it is within."""
    sizing = Sizing(None, canary_rps, control_rps, error_rate, ratio)
    if canary_rps <= 0 or control_rps <= 0 or error_rate <= 0:
        return sizing
    rng = np.random.default_rng(seed)
    loglik = np.zeros((runs, OFFSETS.size))
    decided = np.zeros(runs, dtype=bool)
    looks = math.ceil(horizon / interval)
    need = math.ceil(probability * runs)
    beyond = ratio > tolerance
    boundary = center(tolerance)
    for i in range(1, looks + 1):
        nc = rng.poisson(canary_rps * interval, runs)
        n0 = rng.poisson(control_rps * interval, runs)
        ec = rng.binomial(nc, min(1.0, error_rate * ratio))
        e0 = rng.binomial(n0, error_rate)
        open_ = np.flatnonzero(~decided)
        loglik[open_] += counts_increment(nc[open_], ec[open_], n0[open_], e0[open_], boundary)
        d = decide_counts(loglik[open_], alpha, tolerance, dispersion=dispersion, sequence=False)
        decided[open_[d.failed if beyond else d.successful]] = True
        if decided.sum() >= need:
            return Sizing(i * interval, canary_rps, control_rps, error_rate, ratio)
    return sizing


def smallest_caught(
    canary_rps: float, control_rps: float, error_rate: float, *, tolerance: float, interval: float, alpha: float,
    seconds: float, dispersion: float = 1.0, margin: float = 0.0, largest: float = 20.0,
) -> float | None:
    """The smallest error ratio rolled back within ``seconds`` in 95 % of simulated runs (``detection_time``),
    at the given dispersion, with the rollback boundary moved beyond the tolerance by ``margin`` (log ratio: the
    pods' spread); None when not even ``largest`` is. Searched on ratios 5 % apart (seeded, so repeatable)."""
    boundary = tolerance * math.exp(margin)
    ratio = boundary * 1.05
    while ratio <= largest:
        if detection_time(canary_rps, control_rps, error_rate, ratio, tolerance=boundary, interval=interval,
                          alpha=alpha, horizon=seconds, dispersion=dispersion, runs=100).seconds is not None:
            return ratio
        ratio *= 1.05
    return None


def clean_time(
    canary_rps: float, error_rate: float, *, negligible: float, alpha: float, interval: float = 10.0,
    horizon: float = HORIZON,
) -> float | None:
    """Seconds until a canary failing ``error_rate`` of its requests is promoted on the negligible rate (the
    average of the ratio's and the rate's e-values reaching ``1/alpha``, the ratio's taken as 1: no errors to
    compare), on the look grid; None if not within the horizon.

    Taken at the expected counts (a clean canary's errors are as the stable's), so it is the typical time.
    """
    if canary_rps <= 0 or error_rate >= negligible:
        return None
    threshold = math.log(2 / alpha - 1)

    def clean(seconds: float) -> bool:
        requests = canary_rps * seconds
        return rate_log_evidence(error_rate * requests, requests, negligible, negligible) >= threshold

    low, high = 1, math.floor(horizon / interval)
    if high < 1 or not clean(high * interval):
        return None
    while low < high:  # the first clean look: being clean only gets truer as requests accrue
        mid = (low + high) // 2
        if clean(mid * interval):
            high = mid
        else:
            low = mid + 1
    return high * interval


@dataclass(frozen=True)
class Tail:
    """A latency judge's traffic: requests per second, the share slower than ``le`` (the bucket bound nearest
    the judged quantile), and the ratio of that share a regression of the tolerance makes."""

    rps: float
    share: float
    le: float | None
    ratio: float


@dataclass(frozen=True)
class StepPlan:
    """One analysis step of a canary: its weight, how long it lasts, and a sizing per count or latency judge.

    ``sizing`` is the time to roll back a regression beyond the tolerance (``catch``, the tolerance squared:
    twice its distance from no change, since a regression right at the tolerance is rolled back at most
    alpha of the time by design); ``promote`` the time to promote a version no different from its control.
    """

    step: int
    weight: int
    duration: float | None
    check: str
    tolerance: float
    alpha: float
    sizing: Sizing
    control: str = "stable"
    events: str = "errors"
    """What the judge counts, as the plan says it (errors, or the requests slower than a bucket bound)."""
    target: str = ""
    """The regression to catch, as the plan says it (default: the error ratio)."""
    promote_after: float | None = None
    """With ``negligibleRate``: when a canary as clean as the stable is shown below it and promoted."""
    negligible: float | None = None
    promote: Sizing | None = None
    """The time by which 95 % of versions no different from the control are promoted."""

    @property
    def no_ratio(self) -> bool:
        """The stable served no error: there is no error ratio to judge (only the negligible rate can decide)."""
        return self.events == "errors" and self.sizing.error_rate <= 0

    @property
    def enough(self) -> bool:
        """The step lasts long enough for a good version to be promoted (not to end 'not enough traffic')."""
        times = [self.promote_after] if self.no_ratio else [
            self.promote.seconds if self.promote is not None else None, self.promote_after]
        known = [t for t in times if t is not None]
        return bool(known) and (self.duration is None or min(known) <= self.duration)

    def single_pod(self) -> str:
        """What one canary pod can show when pods differ by the judge's stated default (before it measures)."""
        from orchestrator.gates.dispersion import DEFAULT_POD_SD, ROLLBACK_SHARE, margin

        # Against many control pods (1/m -> 0): the least the pods' spread costs one canary pod.
        shift = float(margin(DEFAULT_POD_SD, 1, 10**6, self.alpha * ROLLBACK_SHARE, 0))
        return (f"pods differing by ±{DEFAULT_POD_SD * 100:g} % (the stated default until the judge measures the "
                f"stable's own spread at its first look) let a single canary pod be rolled back only when shown "
                f"beyond {self.tolerance * math.exp(shift):.2g}x")

    def line(self) -> str:
        s = self.sizing
        head = (f"step {self.step}: {self.check} at {self.weight} % weight (canary {s.canary_rps:.3g} rps vs "
                f"{self.control} {s.control_rps:.3g} rps, {s.error_rate * 100:.2g} % {self.events})")  # fmt: skip
        target = self.target or f"a {s.ratio:.3g}x error regression"
        if self.no_ratio:
            need = "the stable served no error: no error ratio to judge"
        else:
            promote = self.promote.seconds if self.promote is not None else None
            need = (f"a version no different from the {self.control} is promoted after about {_minutes(promote)}"
                    if promote is not None else f"a version no different from the {self.control} is not promoted "
                    f"within {_minutes(HORIZON)} (tolerance {self.tolerance:g}x)")  # fmt: skip
            need += (f"; {target} is not caught within {_minutes(HORIZON)}" if s.seconds is None
                     else f"; {target} is caught after about {_minutes(s.seconds)}")
            need += " (95 % of runs)"
        if self.negligible is not None:
            rate = f"(negligibleRate {self.negligible * 100:g} %)"
            need += (f"; a canary as clean is promoted after about {_minutes(self.promote_after)} {rate}"
                     if self.promote_after is not None else f"; a canary as clean is not shown negligible {rate}")
        need += "; " + self.single_pod()
        if self.duration is None:
            return f"{head}: {need}"
        verdict = "enough" if self.enough else "WARNING: too short, expect 'not enough traffic'"
        return f"{head}: {need}; the step lasts {_minutes(self.duration)}: {verdict}"


def plan(
    rollout: object,
    rates: dict[str, tuple[float, float]],
    *,
    alpha_of: dict[str, float],
    tails: dict[str, Tail] | None = None,
    catch: bool = True,
) -> list[StepPlan]:
    """Size every count or latency judge of every analysis step (and the background ones at each step's weight).

    ``rates``: per count judge, the service's (requests per second, error rate) now; ``tails``: per latency
    judge, its ``Tail`` now; ``alpha_of``: the alpha each check gets (its share of the rollout's bound).
    Gauge judges are not sized: their looks are per-pod readings, not counts of events.
    """
    from orchestrator.specs.canary import AnalysisStep, CanaryRollout, SetWeightStep
    from orchestrator.specs.judge import Direction, JudgeKind

    tails = tails or {}
    assert isinstance(rollout, CanaryRollout)
    spec = rollout.spec
    out: list[StepPlan] = []
    weight = 0
    for index, step in enumerate(spec.steps, start=1):
        if isinstance(step, SetWeightStep):
            # A replica count's share depends on the stable's size, which a plan does not read: skip it.
            weight = step.set_weight if isinstance(step.set_weight, int) else -1
            continue
        if not isinstance(step, AnalysisStep) or weight <= 0:
            continue
        duration = step.analysis.duration.total_seconds() if step.analysis.duration else None
        for check in [*step.analysis.checks, *spec.background_checks]:
            judge = check.judge
            if judge is None:
                continue
            extra: dict[str, Any] = {}
            if judge.kind is JudgeKind.COUNTS and check.name in rates:
                rps, rate = rates[check.name]
                tolerance = judge.effective_tolerance
                if judge.negligible_rate is not None and judge.direction is Direction.HIGHER_IS_WORSE:
                    extra["negligible"] = judge.negligible_rate
                    extra["promote_after"] = clean_time(
                        rps * weight / 100, rate, negligible=judge.negligible_rate, alpha=alpha_of[check.name],
                        interval=check.interval.total_seconds())
            elif judge.kind is JudgeKind.LATENCY and check.name in tails:
                tail = tails[check.name]
                rps, rate, tolerance = tail.rps, tail.share, tail.ratio
                quantile = f"p{judge.quantile * 100:g}"
                shift = (judge.effective_tolerance - 1) * 100
                extra = {
                    "events": f"slower than {tail.le:g} s" if tail.le is not None else "slow (no finite bucket)",
                    "target": f"a {tolerance**2:.2g}x slow-share regression (the tolerance, {quantile} +{shift:g} %, "
                              f"is {tolerance:.2g}x the slow share)",
                }  # fmt: skip
            else:
                continue
            canary = rps * weight / 100
            control = canary if judge.compare_to == "baseline" else rps * (100 - weight) / 100
            interval = check.interval.total_seconds()
            alpha = alpha_of[check.name]
            # ``catch`` False (the pre-flight, which asks only whether a good version can be promoted): the
            # time to catch a regression, the slowest figure at low traffic, is not simulated.
            sizing = (detection_time(canary, control, rate, tolerance**2, tolerance=tolerance, interval=interval,
                                     alpha=alpha) if catch
                      else Sizing(None, canary, control, rate, tolerance**2))  # fmt: skip
            promote = detection_time(canary, control, rate, 1.0, tolerance=tolerance, interval=interval,
                                     alpha=alpha, horizon=min(HORIZON, 4 * (duration or HORIZON)))  # fmt: skip
            out.append(StepPlan(index, weight, duration, check.name, judge.effective_tolerance, alpha, sizing,
                                judge.compare_to, promote=promote, **extra))  # fmt: skip
    return out


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def preflight(
    rollout: object,
    rates: dict[str, tuple[float, float]],
    *,
    alpha_of: dict[str, float],
    tails: dict[str, Tail] | None = None,
) -> list[str]:
    """Know before you start: one line per judged step that cannot promote a good version in its time at the
    current traffic, with the duration, weight or tolerance that would (the rest of the plan's arithmetic).

    Pure, like ``plan``: the caller reads the traffic (``counts.service_rates`` / ``service_tail``) where
    Prometheus is reachable (``canary run``'s pre-flight), and refuses the run on any line when the spec asks for
    a strict plan (``strictPlan``).
    """
    out: list[str] = []
    for p in plan(rollout, rates, alpha_of=alpha_of, tails=tails, catch=False):
        if p.enough or p.duration is None:
            continue
        s = p.sizing
        interval = 10.0
        hints: list[str] = []
        # Searched up to 30 times the step (at most the plan's horizon): a longer step is no practical answer,
        # and the run starts without waiting for an 8-hour simulation.
        promote = detection_time(s.canary_rps, s.control_rps, s.error_rate, 1.0, tolerance=p.tolerance,
                                 interval=interval, alpha=p.alpha, runs=100,
                                 horizon=min(HORIZON, 30 * p.duration)).seconds  # fmt: skip
        if promote is not None:
            hints.append(f"a step of at least {_minutes(promote)}")
        total = s.canary_rps * 100 / max(p.weight, 1)
        for weight in (10, 25, 50):  # 100 % leaves no stable side to compare with
            if weight <= p.weight:
                continue
            canary = total * weight / 100
            control = canary if p.control == "baseline" else total * (100 - weight) / 100
            if detection_time(canary, control, s.error_rate, 1.0, tolerance=p.tolerance, interval=interval,
                              alpha=p.alpha, horizon=p.duration).seconds is not None:  # fmt: skip
                hints.append(f"{weight} % weight")
                break
        for tolerance in (1.5, 2.0, 3.0):
            if tolerance <= p.tolerance:
                continue
            if detection_time(s.canary_rps, s.control_rps, s.error_rate, 1.0, tolerance=tolerance, interval=interval,
                              alpha=p.alpha, horizon=p.duration).seconds is not None:  # fmt: skip
                hints.append(f"a {tolerance:g}x tolerance")
                break
        would = ("it would decide with " + " or ".join(hints) if hints else
                 f"nothing near decides it at this traffic (a step up to {_minutes(min(HORIZON, 30 * p.duration))}, "
                 "up to 50 % weight, or a tolerance up to 3x)")
        out.append(f"step {p.step}: {p.check} at {p.weight} % weight cannot promote a version no different from the "
                   f"{p.control} within its {_minutes(p.duration)} at the current traffic (canary "
                   f"{s.canary_rps:.3g} rps, {s.error_rate * 100:.2g} % {p.events}): it would end 'not enough "
                   f"traffic', which never promotes; {would}")  # fmt: skip
    return out
