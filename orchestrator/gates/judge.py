"""The sequential canary-vs-control judge: anytime-valid tests on the counts behind the rates.

Pure and deterministic (numpy/scipy arithmetic, no I/O, no clock), so workflow code may call it; the
state it carries between looks is a small pydantic model that travels through Temporal's converter.

Counts (errors per request) -- after Lindon, Sanden & Shirikian (KDD 2022, arXiv 2205.14762): model each
side's errors as a Poisson process whose intensity is proportional to its requests. Conditioned on the
errors both sides had in one look, the canary's share of them is Binomial(e, p) with

    p = q * rho / (q * rho + 1 - q),   q = canary requests / (canary + control requests) in that look,

and ``rho`` the ratio of the canary's error rate to the control's. The control's own error rate (the
nuisance) drops out, and because ``q`` is taken from each look's request counts, a traffic split that
changes at every ``setWeight`` (or drifts with load balancing) keeps the test exact. For any fixed
``rho`` the product over looks of the binomial likelihood ratios against ``rho'`` is a test martingale
when the truth is ``rho'``; mixing it over a prior on ``log rho`` gives the e-process. Because ``q``
changes from look to look there is no conjugate prior, so the mixture is a fixed grid of ``log rho``
values laid on the tolerance (``center + OFFSETS``, 1 % apart near it, so every tolerance from +1 % is a
grid point) with normal prior weights: the state is the log-likelihood at each grid point, and every
quantity below is a log-sum-exp over it.

* rollback (``failed``): the mixture over ratios beyond the tolerance against the tolerance reaches
  ``1/alpha``. For any ratio within it each term is a supermartingale (the binomial likelihood ratio is
  monotone in ``p``), so by Ville's inequality a version within its tolerance is rolled back with
  probability at most ``alpha``, however often the judge looks. Failure evidence accumulates over the
  whole rollout;
* promote early (``successful``): the mixture over ratios within the tolerance against it reaches
  ``1/alpha``, from the current weight's own looks (``step_since``): a version beyond its tolerance is
  promoted with probability at most ``alpha``. ``negligibleRate`` does not add a second route: its
  e-value (the canary's rate below it) is *averaged* with the ratio's, and the average decides, so the
  bound stays ``alpha``;
* confidence sequence: ``rho'`` is excluded when a one-sided mixture against it reaches ``1/alpha``;
  each end holds with ``1 - alpha``, the interval with ``1 - 2 alpha``, and is labelled so;
* ``not enough traffic``: neither happened when the step's time is over (never a promotion).

The service's noise (``gates.dispersion``, measured from the stable's history by ``gates.counts``): the
log-likelihoods are divided by the dispersion between looks (quasi-likelihood), and the pods' spread moves
the rollback boundary beyond the tolerance (and the promotion boundary within it) by a Student margin,
with part of ``alpha`` spent on it, so the canary is judged as a version rather than as a pod. A declared
``warmup`` leaves the first looks uncounted.

Latency (histograms) -- Lindon & Malek (NeurIPS 2022) test multinomial counts with a Dirichlet mixture;
we collapse the buckets to two categories, "slower than the control's ``quantile``" and the rest, which
keeps the tail in focus and turns the test into the count test above with slow requests as the events.
The bucket bound is fixed from the control's history *before* the first look (data the test never sees
again), and the tolerance ("p99 +10 %") is converted into a ratio of slow shares by interpolating the
control's histogram (a power law within the bucket: log-share linear in log-latency).

Gauges (CPU, memory per pod) -- no counts to condition on: each look gives one relative difference of
the sides' means, and the asymptotic confidence sequence of Waudby-Smith et al. (2021, "Time-uniform
central limit theory") on its mean decides (rollback when the CS lies beyond the tolerance, promote when
it lies within it). It assumes independent looks, which gauge readings (memory above all) are not, so
gauge verdicts state no false-rollback bound; the judge waits for ``MIN_GAUGE_LOOKS`` looks.

One alpha per rollout: ``alpha_per_check`` splits it evenly over the rollout's judge checks (Bonferroni):
the chance that *any* of them rolls back a good release stays below the rollout's bound.

The vectorised functions (``counts_increment``, ``evidence``, ``bounds``, ``decide_counts``) take arrays
with any leading
shape, so the decision-quality benchmark runs thousands of judges at once through the same arithmetic
that ``judge_update`` uses for one.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import gammainc, gammaln, logsumexp

from orchestrator.gates.dispersion import DEFAULT as DEFAULT_NOISE
from orchestrator.gates.dispersion import PROMOTE_SHARE, ROLLBACK_SHARE, Noise, for_latency, margin
from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement, Phase
from orchestrator.specs.checks import Check
from orchestrator.specs.judge import Direction, Judge, JudgeKind

Array = NDArray[np.float64]

OFFSETS: Array = np.unique(np.round(np.concatenate([
    np.arange(-3.0, -0.5, 0.05), np.arange(-0.5, -0.1, 0.025), np.arange(-0.1, 0.1, 0.01),
    np.arange(0.1, 0.5, 0.025), np.arange(0.5, 3.5 + 1e-9, 0.05)]), 10))
"""log(rho) minus the log of the boundary ratio (the tolerance): the grid is laid on the tolerance itself,
so every tolerance a user can write is exactly a grid point; 1 % apart within ±10 % of it, 2.5 % to ±50 %,
5 % beyond (rho from 0.05x to 33x the boundary). About 160 points."""
ZERO = int(np.flatnonzero(OFFSETS == 0)[0])
GRID = OFFSETS
"""The grid when the boundary is a ratio of 1 (``center = 0``)."""
PRIOR_SD = 1.0
"""Prior on the worse side of the boundary: normal in log(rho), sd 1 -- regressions 1.1x to 5x beyond it."""
_WIDTH: Array = np.gradient(OFFSETS)


@functools.lru_cache(maxsize=64)
def _prior(tolerance: float, worse_up: bool) -> tuple[Array, Array, Array]:
    """(log weights, log mass strictly above each point, strictly below) of the mixing prior over ``OFFSETS``.

    Worse side: normal, sd ``PRIOR_SD``. Better side: normal with sd ``log(tolerance)`` (within [0.05, 1]),
    since a version no different from its control sits ``log(tolerance)`` on the better side: the promotion
    test spends its prior where promotable versions are. Fixed by the spec, before any data: valid.
    """
    better_sd = min(1.0, max(0.05, math.log(tolerance)))
    worse = OFFSETS > 0 if worse_up else OFFSETS < 0
    sd = np.where(worse, PRIOR_SD, better_sd)
    log_w = np.log(_WIDTH) - np.log(sd) - 0.5 * (OFFSETS / sd) ** 2
    above = np.append(np.logaddexp.accumulate(log_w[::-1])[::-1][1:], -np.inf)
    below = np.insert(np.logaddexp.accumulate(log_w)[:-1], 0, -np.inf)
    return log_w, above, below


def center(tolerance: float, direction: Direction = Direction.HIGHER_IS_WORSE) -> float:
    """log of the boundary ratio canary/control: ``tolerance`` (higher is worse) or ``1/tolerance``."""
    return math.log(tolerance) if direction is Direction.HIGHER_IS_WORSE else -math.log(tolerance)


MIN_GAUGE_LOOKS = 3
MAX_MARKS = 400
"""At most this many cumulative counter readings are kept (series of pods long gone are dropped first)."""


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, ser_json_inf_nan="constants")


class Outcome(StrEnum):
    RUNNING = "running"
    FAILED = "failed"
    SUCCESSFUL = "successful"
    NOT_ENOUGH_TRAFFIC = "not enough traffic"


class Side(_Data):
    """What one side measured in one look (increments since the previous look)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: list[tuple[float, float]] = Field(default_factory=list)
    """Cumulative histogram increments as (le, count), ascending le, +Inf last."""
    gauge: list[float] = Field(default_factory=list)
    """One value per pod."""


class JudgeLook(_Data):
    """One look: both sides' increments, and the cumulative readings they were computed from."""

    at: datetime
    canary: Side = Field(default_factory=Side)
    control: Side = Field(default_factory=Side)
    marks: dict[str, float] = Field(default_factory=dict)
    """Cumulative counter readings by series key; the next look differences against them."""
    start: bool = False
    """The first look: it only sets the starting point (and, for latency, the tail bound)."""
    control_history: list[tuple[float, float]] = Field(default_factory=list)
    """On the first look: the control's cumulative histogram (or [(0, requests), (1, errors)] for counts)."""
    skipped: str = ""
    """Why this look's increments were not counted (a counter reset), or ''."""
    waiting: str = ""
    """Why this look waits (one side's scrape has not landed): nothing counted, no reading moved on."""
    queries: list[str] = Field(default_factory=list)
    scrape_seconds: dict[str, float] = Field(default_factory=dict)
    """On the first look: each side's scrape interval inferred from its samples' spacing (when known)."""
    noise: Noise | None = None
    """On the first look: the stable's dispersion and pod spread from its history (None: not read)."""
    pods: tuple[int, int] = (0, 0)
    """How many pods (series) each side's request counter had in this look (0: not known)."""


class JudgeState(_Data):
    """Everything the judge remembers between looks: bounded (about 150 numbers plus the counter marks)."""

    looks: int = 0
    """Looks whose increments were counted."""
    canary_requests: float = 0.0
    canary_events: float = 0.0
    control_requests: float = 0.0
    control_events: float = 0.0
    loglik: list[float] = Field(default_factory=list)
    """Log-likelihood of each ``GRID`` point (counts and latency); empty before the first counted look."""
    gauge_n: int = 0
    gauge_mean: float = 0.0
    gauge_m2: float = 0.0
    canary_gauge: float = 0.0
    control_gauge: float = 0.0
    tail_le: float | None = None
    tail_tolerance: float | None = None
    canary_buckets: list[float] = Field(default_factory=list)
    control_buckets: list[float] = Field(default_factory=list)
    bucket_les: list[float] = Field(default_factory=list)
    history_rate: float | None = None
    """The control's event rate before the first look (to tell a shared outage from a regression)."""
    marks: dict[str, float] = Field(default_factory=dict)
    started_at: datetime | None = None
    last_at: datetime | None = None
    outcome: Outcome = Outcome.RUNNING
    message: str = ""
    step_since: datetime | None = None
    """When the current weight (stage) began, as the run says; None: one step for the whole run."""
    step_loglik_since: datetime | None = None
    """The step the ``step_*`` fields count: success at a weight is established from its own data."""
    step_loglik: list[float] = Field(default_factory=list)
    step_canary_requests: float = 0.0
    step_canary_events: float = 0.0
    noise: Noise | None = None
    """The service's dispersion and pod spread (``gates.dispersion``); None: the stated default."""
    canary_pods: int = 0
    control_pods: int = 0
    notes: list[str] = Field(default_factory=list)
    """What the judge found worth saying once (a scrape interval longer than the look interval, ...)."""


class JudgeVerdict(_Data):
    """The judge's answer after a look; ``measurement()`` and ``status()`` map it onto the gate model."""

    check: str
    outcome: Outcome
    reason: str
    """Machine-readable: regression, within-tolerance, not-enough-traffic, collecting, starting, counter-reset."""
    message: str
    alpha: float
    evidence: float | None = None
    """The e-value for "no regression" (counts and latency); rollback when it reaches 1/alpha."""
    estimate: float | None = None
    """Canary relative to control: a ratio (counts, latency tail) or a relative difference (gauges)."""
    lower: float | None = None
    upper: float | None = None
    canary_value: float | None = None
    control_value: float | None = None
    shared_outage: bool = False
    needed_requests: float | None = None
    """Roughly how many more requests (both sides) a decision needs at the current rates."""
    needed_seconds: float | None = None

    @property
    def phase(self) -> Phase:
        """The phase of the look's ``Measurement``: an undecided look is inconclusive, never successful."""
        return {
            Outcome.FAILED: Phase.FAILED,
            Outcome.SUCCESSFUL: Phase.SUCCESSFUL,
        }.get(self.outcome, Phase.INCONCLUSIVE)

    def measurement(self, look: JudgeLook) -> Measurement:
        queries = look.queries or [""]
        return Measurement(
            check=self.check,
            phase=self.phase,
            value=self.canary_value,
            control_value=self.control_value,
            query=queries[0],
            control_query=queries[1] if len(queries) > 1 else None,
            message=self.message,
            at=look.at,
            outcome=self.outcome.value,
        )

    def status(self, looks: int) -> CheckStatus:
        """The check's status: running, failed, successful, or inconclusive ("not enough traffic")."""
        phase = {
            Outcome.RUNNING: CheckPhase.RUNNING,
            Outcome.FAILED: CheckPhase.FAILED,
            Outcome.SUCCESSFUL: CheckPhase.SUCCESSFUL,
            Outcome.NOT_ENOUGH_TRAFFIC: CheckPhase.INCONCLUSIVE,
        }[self.outcome]
        return CheckStatus(check=self.check, phase=phase, measurements=looks, reason=self.message,
                           outcome=self.outcome.value)


# -- alpha per rollout -----------------------------------------------------------------------------


def alpha_per_check(rollout_alpha: float, n_checks: int) -> float:
    """Bonferroni: each of ``n_checks`` judge checks gets an equal share of the rollout's bound."""
    return rollout_alpha / max(1, n_checks)


def rollout_alpha(checks: list[Check]) -> tuple[float, int]:
    """The rollout's false-rollback bound (the smallest any judge check declares) and its judge count."""
    judges = [c.judge for c in checks if c.judge is not None]
    if not judges:
        return 0.0, 0
    return min(j.max_false_rollback for j in judges), len(judges)


def alpha_note(rollout: float, n_checks: int) -> str:
    """How the verdict states the bound: the rollout's, and its split when several judge checks share it."""
    if n_checks <= 1:
        return f"false-rollback bound {_pct(rollout)}"
    return (f"false-rollback bound {_pct(rollout)} for the rollout, split over {n_checks} judge checks "
            f"({rollout / n_checks * 100:.3g} % each)")


# -- vectorised statistics ---------------------------------------------------------------------------


def counts_increment(nc: Any, ec: Any, n0: Any, e0: Any, boundary: float = 0.0) -> Array:
    """Log-likelihood increments over ``boundary + OFFSETS`` (log rho) for one look.

    Arrays broadcast; the grid is the last axis. ``boundary`` is ``center(tolerance, direction)``.
    """
    nc, ec, n0, e0 = (np.asarray(x, dtype=np.float64)[..., None] for x in (nc, ec, n0, e0))
    total = nc + n0
    informative = (nc > 0) & (n0 > 0) & ((ec + e0) > 0)
    q = np.where(informative, nc / np.where(total > 0, total, 1.0), 0.5)
    grid = boundary + OFFSETS
    # log p/q and log (1-p)/(1-q) with p = q e^b / (q e^b + 1 - q), in a numerically stable form.
    log_norm = np.logaddexp(np.log(q) + grid, np.log1p(-q))
    inc = ec * (grid - log_norm) + e0 * (-log_norm)
    return np.where(informative, inc, 0.0)


def evidence(loglik: Array, tolerance: float = math.e**0.2, at: int = ZERO, upward: bool = True,
             worse_up: bool = True) -> Array:  # fmt: skip
    """Log e-value of the one-sided mixture against ``OFFSETS[at]`` (upward: alternatives above it)."""
    log_w, w_above, w_below = _prior(tolerance, worse_up)
    terms = log_w + loglik
    if upward:
        numerator = logsumexp(terms[..., at + 1 :], axis=-1)
        return np.asarray(numerator - w_above[at] - loglik[..., at], dtype=np.float64)
    numerator = logsumexp(terms[..., :at], axis=-1)
    return np.asarray(numerator - w_below[at] - loglik[..., at], dtype=np.float64)


def bounds(loglik: Array, alpha: float, tolerance: float = math.e**0.2, boundary: float = 0.0,
           worse_up: bool = True) -> tuple[Array, Array]:  # fmt: skip
    """Confidence-sequence bounds on log(rho), each end at level ``1 - alpha`` (so ``1 - 2 alpha`` for both),
    rounded outwards to the grid."""
    log_w, w_above, w_below = _prior(tolerance, worse_up)
    terms = log_w + loglik
    above = np.logaddexp.accumulate(terms[..., ::-1], axis=-1)[..., ::-1]
    below = np.logaddexp.accumulate(terms, axis=-1)
    up_num = np.concatenate([above[..., 1:], np.full((*loglik.shape[:-1], 1), -np.inf)], axis=-1)
    down_num = np.concatenate([np.full((*loglik.shape[:-1], 1), -np.inf), below[..., :-1]], axis=-1)
    with np.errstate(invalid="ignore"):
        e_up = up_num - w_above - loglik
        e_down = down_num - w_below - loglik
    threshold = math.log(1 / alpha)
    kept = ~(np.nan_to_num(e_up, nan=-np.inf) >= threshold) & ~(np.nan_to_num(e_down, nan=-np.inf) >= threshold)
    n = OFFSETS.size
    grid = boundary + OFFSETS
    first = np.where(kept.any(axis=-1), kept.argmax(axis=-1), 0)
    last = np.where(kept.any(axis=-1), n - 1 - kept[..., ::-1].argmax(axis=-1), n - 1)
    lower = np.where(first > 0, grid[np.maximum(first - 1, 0)], -np.inf)
    upper = np.where(last < n - 1, grid[np.minimum(last + 1, n - 1)], np.inf)
    return lower, upper


@dataclass(frozen=True)
class Decision:
    """Arrays over judges: rollback, promotion, both log e-values, and the confidence sequence on log(rho)."""

    failed: NDArray[np.bool_]
    successful: NDArray[np.bool_]
    log_e_fail: Array
    log_e_promote: Array
    lower: Array
    upper: Array


def decide_counts(
    loglik: Array,
    alpha: float,
    tolerance: float,
    direction: Direction = Direction.HIGHER_IS_WORSE,
    *,
    promote_loglik: Array | None = None,
    promote_rate: Any = None,
    dispersion: Any = 1.0,
    margin: Any = 0.0,
    pod_alpha: Any = 0.0,
    promote_margin: Any = None,
    promote_pod_alpha: Any = None,
    rate_dispersion: Any = None,
    sequence: bool = True,
) -> Decision:
    """Both decisions against the tolerance, for arrays of judges (log-likelihoods over ``center + OFFSETS``).

    Rollback: the mixture over ratios beyond the tolerance against the tolerance reaches ``1/alpha`` --
    each term is a supermartingale for any ratio within it, so a version within its tolerance is rolled
    back with probability at most ``alpha``. Promotion: the mixture over ratios within the tolerance
    against it reaches ``1/alpha`` (from ``promote_loglik``, the current step's own data, when given), or,
    with ``promote_rate`` (the log e-value that the canary's error rate is below the negligible rate), the
    *average* of the two e-values does: the average of e-processes is one, so a version beyond its
    tolerance *and* above the negligible rate is promoted with probability at most ``alpha`` -- one bound,
    not two. ``sequence=False`` skips the confidence sequence.

    The service's noise (``gates.dispersion``): ``dispersion`` divides the log-likelihoods (and the rate's
    log e-value, or ``rate_dispersion`` when given); ``margin`` (log ratio) moves the rollback boundary beyond
    the tolerance by the pods' spread and ``pod_alpha`` is the part of ``alpha`` a rollback spends on it (its
    test runs at ``alpha - pod_alpha``); ``promote_margin`` and ``promote_pod_alpha`` are the same for a
    promotion (default: the rollback's). All broadcast over the leading axes.
    """
    worse_up = direction is Direction.HIGHER_IS_WORSE
    phi = np.asarray(dispersion, dtype=np.float64)[..., None] if np.ndim(dispersion) else float(dispersion)
    scaled = loglik / phi
    promote = scaled if promote_loglik is None else promote_loglik / phi
    shift = np.asarray(margin, dtype=np.float64)
    promote_shift = shift if promote_margin is None else np.asarray(promote_margin, dtype=np.float64)
    if not shift.any() and not promote_shift.any():
        log_e_fail = evidence(scaled, tolerance, ZERO, upward=worse_up, worse_up=worse_up)
        log_e_promote = evidence(promote, tolerance, ZERO, upward=not worse_up, worse_up=worse_up)
    else:
        # The pods' margins move each boundary away from the tolerance, rounded outwards to the grid.
        above = np.searchsorted(OFFSETS, shift - 1e-12, side="left")
        below = np.searchsorted(OFFSETS, -shift + 1e-12, side="right") - 1
        p_above = np.searchsorted(OFFSETS, promote_shift - 1e-12, side="left")
        p_below = np.searchsorted(OFFSETS, -promote_shift + 1e-12, side="right") - 1
        fail_at, promote_at = (above, p_below) if worse_up else (below, p_above)
        log_e_fail = _evidence_at(scaled, tolerance, worse_up, fail_at, upward=worse_up)
        log_e_promote = _evidence_at(promote, tolerance, worse_up, promote_at, upward=not worse_up)
    if promote_rate is not None:
        rate_phi = phi_of(phi) if rate_dispersion is None else np.asarray(rate_dispersion, dtype=np.float64)
        log_e_promote = np.logaddexp(log_e_promote, np.asarray(promote_rate, dtype=np.float64) / rate_phi) \
            - math.log(2)
    if sequence:
        lower, upper = bounds(scaled, alpha, tolerance, center(tolerance, direction), worse_up)
    else:  # the decisions do not need the sequence: simulations skip it
        lower, upper = np.full(scaled.shape[:-1], -np.inf), np.full(scaled.shape[:-1], np.inf)
    fail_alpha = np.asarray(alpha - np.asarray(pod_alpha, dtype=np.float64))
    promote_alpha = fail_alpha if promote_pod_alpha is None else \
        np.asarray(alpha - np.asarray(promote_pod_alpha, dtype=np.float64))
    failed = np.asarray(log_e_fail >= np.log(1 / fail_alpha))
    successful = np.asarray((log_e_promote >= np.log(1 / promote_alpha)) & ~failed)
    return Decision(failed, successful, log_e_fail, np.asarray(log_e_promote), lower, upper)


def phi_of(phi: Any) -> Any:
    """The dispersion without the grid axis (it divides scalars such as the rate's log e-value)."""
    return phi[..., 0] if np.ndim(phi) else phi


def _evidence_at(loglik: Array, tolerance: float, worse_up: bool, at: Any, *, upward: bool) -> Array:
    """``evidence`` against a boundary index per judge (``at`` broadcasts over the leading axes)."""
    log_w, w_above, w_below = _prior(tolerance, worse_up)
    terms = log_w + loglik
    # A margin past the grid's end leaves no alternative on that side: the e-value is 0, never a decision.
    index = np.clip(np.broadcast_to(np.asarray(at), loglik.shape[:-1]), 0, OFFSETS.size - 1)[..., None]
    at_value = np.take_along_axis(loglik, index, axis=-1)[..., 0]
    # Cumulative sums of exp(terms - max) in place of logaddexp.accumulate (ten times faster on thousands of
    # judges); terms far below the maximum underflow to 0, which only matters where the e-value is negligible.
    top = terms.max(axis=-1, keepdims=True)
    weights = np.exp(terms - top)
    if upward:
        tail = np.cumsum(weights[..., ::-1], axis=-1)[..., ::-1]
        shifted = np.concatenate([tail[..., 1:], np.zeros((*loglik.shape[:-1], 1))], axis=-1)
        boundary = w_above[index[..., 0]]
    else:
        head = np.cumsum(weights, axis=-1)
        shifted = np.concatenate([np.zeros((*loglik.shape[:-1], 1)), head[..., :-1]], axis=-1)
        boundary = w_below[index[..., 0]]
    mass = np.take_along_axis(shifted, index, axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        numerator = np.log(mass) + top[..., 0]
        value = np.where(mass > 0, numerator - boundary - at_value, -np.inf)
    return np.asarray(value, dtype=np.float64)


def rate_log_evidence(events: float, exposure: float, u: float, prior_mean: float) -> float:
    """Log e-value against "the Poisson rate per unit of exposure is at least ``u``" (see ``rate_upper_bound``)."""
    if exposure <= 0 or u <= 0:
        return 0.0
    a = 0.5
    b = a / max(prior_mean, 1e-12)
    value = a * math.log(b) - float(gammaln(a)) + float(gammaln(events + a)) - (events + a) * math.log(exposure + b)
    value += math.log(max(float(gammainc(events + a, (exposure + b) * u)), 1e-300))
    value -= math.log(max(float(gammainc(a, b * u)), 1e-300))
    return value - (events * math.log(u) if events > 0 else 0.0) + exposure * u


def rate_upper_bound(events: float, exposure: float, alpha: float, prior_mean: float) -> float:
    """Anytime-valid upper confidence bound on a Poisson rate per unit of exposure (closed form).

    For a candidate rate ``u`` the e-process against "the rate is at least ``u``" mixes the Poisson
    likelihood ratios of all rates below ``u`` under a Gamma(1/2, 1/(2 prior_mean)) prior truncated to
    ``[0, u]``; each ratio is a supermartingale when the true rate is ``u`` or more, so the mixture is
    too. With E events over exposure N its logarithm is, in scipy's regularised incomplete gamma ``P``::

        a log b - lnG(a) + lnG(E + a) - (E + a) log(N + b) + log P(E + a, (N + b) u) - log P(a, b u)
        - E log u + N u

    The bound is the ``u`` where it reaches ``log(1/alpha)``, found by bisection (deterministic).
    """
    threshold = math.log(1 / alpha)

    def log_e(u: float) -> float:
        return rate_log_evidence(events, exposure, u, prior_mean)

    if exposure <= 0:
        return math.inf
    lo = max(events / exposure, 1e-12)
    hi = max(lo * 2, 1e-9)
    while log_e(hi) < threshold:
        hi *= 2
        if hi > 1e6:
            return math.inf
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        if log_e(mid) >= threshold:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1.001:
            break
    return hi


def gauge_radius(n: Any, variance: Any, alpha: float) -> Array:
    """Half-width of the asymptotic confidence sequence for a mean after ``n`` looks (Waudby-Smith et al.).

    ``sd * sqrt(2 (n r + 1) / (n^2 r) * log(sqrt(n r + 1) / alpha))``, with the mixing parameter ``r``
    tuned so the bound is tightest around 30 looks.
    """
    n = np.maximum(np.asarray(n, dtype=np.float64), 1.0)
    sd = np.sqrt(np.maximum(np.asarray(variance, dtype=np.float64), 0.0))
    r = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / 30
    return np.asarray(sd * np.sqrt(2 * (n * r + 1) / (n**2 * r) * np.log(np.sqrt(n * r + 1) / alpha)))


# -- the judge, one check at a time ------------------------------------------------------------------


def judge_update(
    check: Check, state: JudgeState, look: JudgeLook, *, alpha: float, checks: int = 1
) -> tuple[JudgeState, JudgeVerdict]:
    """Fold one look into the state and say where the check stands. A failure never changes.

    A success does not end the judging: failure evidence keeps accumulating under the one alpha at
    every later weight, and success at a later weight (``state.step_since``) is established from that
    weight's own data.

    ``alpha`` is this check's share of the rollout's bound (``alpha_per_check``); ``checks`` is how many
    judge checks share it, so the verdict can say how the rollout's bound was split.
    """
    judge = _judge(check)
    marks = _bounded_marks(state.marks, look.marks)
    if state.outcome is Outcome.FAILED:
        return state.model_copy(update={"marks": marks, "last_at": look.at}), _final(check, state, alpha)
    if look.start or state.started_at is None:
        new = _start(judge, state, look, marks)
        note = scrape_note(look.scrape_seconds, check.interval.total_seconds())
        if note:
            new = new.model_copy(update={"notes": [*new.notes, note]})
        return new, _verdict(check, judge, new, alpha, checks, reason="starting",
                             prefix=f"first look: starting point set; {note + '; ' if note else ''}")  # fmt: skip
    if look.skipped or look.waiting:
        new = state.model_copy(update={"marks": marks, "last_at": look.at})
        why = "counter-reset" if look.skipped else "waiting-for-scrape"
        return new, _verdict(check, judge, new, alpha, checks, reason=why, prefix=f"{look.skipped or look.waiting}; ")
    if judge.warmup is not None and look.at - state.started_at <= judge.warmup:
        # The readings move on, so the warm-up's increments are never counted.
        new = state.model_copy(update={"marks": marks, "last_at": look.at})
        prefix = f"warm-up: looks within {_duration(judge.warmup.total_seconds())} of the first are not counted; "
        return new, _verdict(check, judge, new, alpha, checks, reason="warm-up", prefix=prefix)
    new = _fold(judge, state, look, marks)
    verdict = _verdict(check, judge, new, alpha, checks)
    # Only a failure is kept: a success stands for its own weight, the next is judged on its own data.
    decided = verdict.outcome is not Outcome.RUNNING
    new = new.model_copy(update={"outcome": verdict.outcome, "message": verdict.message if decided else new.message})
    return new, verdict


def scrape_note(scrape_seconds: dict[str, float], interval: float) -> str:
    """A warning when a side's samples are further apart than the look interval (its looks will often wait)."""
    slow = {side: seconds for side, seconds in scrape_seconds.items() if seconds > interval * 1.5}
    if not slow:
        return ""
    sides = ", ".join(f"the {side}'s about {seconds:.0f} s" for side, seconds in sorted(slow.items()))
    return (f"warning: samples arrive further apart than the {interval:g} s look interval ({sides}): looks wait "
            "for both sides' next scrape; a look interval at least the scrape interval wastes none")


INCONCLUSIVE_POLICY = ("this never promotes: the rollout's onInconclusive policy decides, by default a pause for a "
                       "decision that rolls back after its timeout (1 h)")


def judge_finish(check: Check, state: JudgeState, *, alpha: float, checks: int = 1) -> JudgeVerdict:
    """The step's time is over: failed or successful if decided, else "not enough traffic"."""
    judge = _judge(check)
    if state.outcome is Outcome.FAILED:
        return _final(check, state, alpha)
    verdict = _verdict(check, judge, state, alpha, checks)
    if verdict.outcome is not Outcome.RUNNING:
        return verdict
    return verdict.model_copy(
        update={
            "outcome": Outcome.NOT_ENOUGH_TRAFFIC,
            "reason": "not-enough-traffic",
            "message": f"not enough traffic: {verdict.message}{_needed_text(verdict)}; {INCONCLUSIVE_POLICY}",
        }
    )


def _judge(check: Check) -> Judge:
    if check.judge is None:
        raise ValueError(f"check {check.name} is not a judge check")
    return check.judge


def _final(check: Check, state: JudgeState, alpha: float) -> JudgeVerdict:
    reason = "regression" if state.outcome is Outcome.FAILED else "within-tolerance"
    return JudgeVerdict(check=check.name, outcome=state.outcome, reason=reason, message=state.message, alpha=alpha)


def _bounded_marks(old: dict[str, float], new: dict[str, float]) -> dict[str, float]:
    merged = {**old, **new}
    if len(merged) <= MAX_MARKS:
        return merged
    # Series seen in this look first, then the most recent of the rest (dicts keep insertion order).
    stale = [k for k in merged if k not in new]
    keep = set(new) | set(stale[len(stale) - (MAX_MARKS - len(new)) :] if len(new) < MAX_MARKS else [])
    return {k: v for k, v in merged.items() if k in keep}


def _start(judge: Judge, state: JudgeState, look: JudgeLook, marks: dict[str, float]) -> JudgeState:
    update: dict[str, Any] = {"marks": marks, "started_at": look.at, "last_at": look.at, "noise": look.noise,
                              "canary_pods": look.pods[0], "control_pods": look.pods[1]}
    history = look.control_history
    if judge.kind is JudgeKind.COUNTS and len(history) == 2 and history[0][1] > 0:
        update["history_rate"] = history[1][1] / history[0][1]
    if judge.kind is JudgeKind.LATENCY:
        le, tolerance = tail_bound(history, judge.quantile, judge.effective_tolerance)
        if le is not None:
            update["tail_le"] = le
            update["tail_tolerance"] = tolerance
            if look.noise is None:
                update["noise"] = for_latency(tolerance, judge.effective_tolerance)
            update["history_rate"] = _share_above(history, le)
    return state.model_copy(update=update)


def tail_bound(history: list[tuple[float, float]], quantile: float, tolerance: float) -> tuple[float | None, float]:
    """The bucket bound nearest the control's ``quantile``, and the slow-share ratio a ``tolerance`` shift makes.

    ``history`` is the control's cumulative histogram (le ascending, +Inf last). The bound is the finite
    ``le`` whose share of slower requests is closest (in ratio) to ``1 - quantile``; a latency shift by the
    factor ``tolerance`` moves the share above it to the share above ``le / tolerance``, interpolated
    within the bucket as a power law (log-share linear in log-latency), which is how tails fall off.
    """
    finite = [(le, c) for le, c in history if math.isfinite(le)]
    total = history[-1][1] if history else 0.0
    if total <= 0 or not finite:
        return None, tolerance
    target = 1 - quantile
    candidates = [(le, (total - c) / total) for le, c in finite if total - c > 0]
    if not candidates:
        return None, tolerance
    le, share = min(candidates, key=lambda x: abs(math.log(x[1] / target)))
    shifted = _share_above(history, le / tolerance)
    ratio = shifted / share if share > 0 else tolerance
    return le, max(ratio, 1.0 + 1e-6)


def _share_above(history: list[tuple[float, float]], x: float) -> float:
    total = history[-1][1] if history else 0.0
    if total <= 0:
        return 0.0
    prev_le, prev_c = 0.0, 0.0
    for le, c in history:
        if x <= le:
            if not math.isfinite(le):
                return (total - prev_c) / total
            above_prev, above = (total - prev_c) / total, (total - c) / total
            if prev_le > 0 and above > 0 and x > 0:
                # Tails fall off like a power of the latency, so interpolate log-share in log-latency;
                # linear interpolation across a wide bucket would overstate how much a shift moves.
                frac = math.log(x / prev_le) / math.log(le / prev_le)
                return math.exp(math.log(above_prev) + frac * (math.log(above) - math.log(above_prev)))
            frac = (x - prev_le) / (le - prev_le) if le > prev_le else 1.0
            return above_prev + frac * (above - above_prev)
        prev_le, prev_c = le, c
    return 0.0


def _fold(judge: Judge, state: JudgeState, look: JudgeLook, marks: dict[str, float]) -> JudgeState:
    update: dict[str, Any] = {"marks": marks, "last_at": look.at, "looks": state.looks + 1}
    if look.pods[0] > 0:
        update["canary_pods"] = look.pods[0]
    if look.pods[1] > 0:
        update["control_pods"] = look.pods[1]
    if judge.kind is JudgeKind.GAUGE:
        c, k = look.canary.gauge, look.control.gauge
        if c and k and (mk := sum(k) / len(k)) > 0:
            mc = sum(c) / len(c)
            d = mc / mk - 1
            n = state.gauge_n + 1
            delta = d - state.gauge_mean
            mean = state.gauge_mean + delta / n
            update.update(gauge_n=n, gauge_mean=mean, gauge_m2=state.gauge_m2 + delta * (d - mean),
                          canary_gauge=mc, control_gauge=mk)  # fmt: skip
        return state.model_copy(update=update)
    if judge.kind is JudgeKind.LATENCY:
        nc, ec = _tail_counts(look.canary.buckets, state.tail_le)
        n0, e0 = _tail_counts(look.control.buckets, state.tail_le)
        les = [le for le, _ in look.control.buckets] or state.bucket_les
        update["canary_buckets"] = _add_buckets(state.canary_buckets, look.canary.buckets, les)
        update["control_buckets"] = _add_buckets(state.control_buckets, look.control.buckets, les)
        update["bucket_les"] = les
    else:
        nc, ec = look.canary.requests, look.canary.errors
        n0, e0 = look.control.requests, look.control.errors
    increment = counts_increment(nc, ec, n0, e0, center(_tolerance(judge, state), judge.direction))
    loglik = (np.asarray(state.loglik, dtype=np.float64) if state.loglik else np.zeros(OFFSETS.size)) + increment
    if state.step_since is not None:
        fresh = state.step_since != state.step_loglik_since
        step = np.zeros(OFFSETS.size) if fresh or not state.step_loglik else np.asarray(state.step_loglik)
        update.update(step_loglik_since=state.step_since, step_loglik=[float(x) for x in step + increment],
                      step_canary_requests=(0.0 if fresh else state.step_canary_requests) + nc,
                      step_canary_events=(0.0 if fresh else state.step_canary_events) + ec)
    update.update(
        loglik=[float(x) for x in loglik],
        canary_requests=state.canary_requests + nc,
        canary_events=state.canary_events + ec,
        control_requests=state.control_requests + n0,
        control_events=state.control_events + e0,
    )
    return state.model_copy(update=update)


def _tail_counts(buckets: list[tuple[float, float]], le: float | None) -> tuple[float, float]:
    if not buckets or le is None:
        return 0.0, 0.0
    total = buckets[-1][1]
    at_or_below = next((c for b, c in buckets if b >= le - 1e-12), total)
    return total, max(0.0, total - at_or_below)


def _add_buckets(acc: list[float], buckets: list[tuple[float, float]], les: list[float]) -> list[float]:
    counts = dict(buckets)
    base = acc if len(acc) == len(les) else [0.0] * len(les)
    return [a + counts.get(le, 0.0) for a, le in zip(base, les, strict=True)]


# -- verdicts and their words -----------------------------------------------------------------------


def _verdict(check: Check, judge: Judge, state: JudgeState, alpha: float, checks: int = 1, *, reason: str = "",
             prefix: str = "") -> JudgeVerdict:  # fmt: skip
    if judge.kind is JudgeKind.GAUGE:
        return _gauge_verdict(check, judge, state, alpha, reason, prefix, checks)
    return _counts_verdict(check, judge, state, alpha, reason, prefix, checks)


def _tolerance(judge: Judge, state: JudgeState) -> float:
    """The ratio the judge decides against: the spec's, or for latency the slow-share ratio it makes."""
    if judge.kind is JudgeKind.LATENCY:
        return state.tail_tolerance or judge.effective_tolerance
    return judge.effective_tolerance


def _counts_verdict(check: Check, judge: Judge, state: JudgeState, alpha: float, reason: str,
                    prefix: str, checks: int = 1) -> JudgeVerdict:  # fmt: skip
    latency = judge.kind is JudgeKind.LATENCY
    tolerance = _tolerance(judge, state)
    loglik = np.asarray(state.loglik, dtype=np.float64) if state.loglik else np.zeros(OFFSETS.size)
    # Failure: every look under the one alpha. Success: the current weight's own looks only.
    step = state.step_since is not None
    fresh = step and (state.step_since != state.step_loglik_since or not state.step_loglik)
    promote_loglik = (np.zeros(OFFSETS.size) if fresh else np.asarray(state.step_loglik, dtype=np.float64)) \
        if step else loglik
    events, requests = ((state.step_canary_events, state.step_canary_requests) if step and not fresh
                        else (0.0, 0.0) if step else (state.canary_events, state.canary_requests))
    negligible = judge.negligible_rate if not latency and judge.direction is Direction.HIGHER_IS_WORSE else None
    promote_rate = (rate_log_evidence(events, requests, negligible, negligible)
                    if negligible is not None and requests > 0 else None)  # fmt: skip
    noise = state.noise or DEFAULT_NOISE
    k, m = max(state.canary_pods, 1), max(state.control_pods, 1)
    spread = noise.pod_sd > 0
    pod_alpha = alpha * ROLLBACK_SHARE if spread else 0.0
    promote_pod_alpha = alpha * PROMOTE_SHARE if spread else 0.0
    shift = float(margin(noise.pod_sd, k, m, pod_alpha, noise.pods)) if spread else 0.0
    promote_shift = float(margin(noise.pod_sd, k, m, promote_pod_alpha, noise.pods)) if spread else 0.0
    # Without history the negligible-rate evidence is taken as for independent requests (stated).
    rate_phi = noise.dispersion if noise.source != "default" else 1.0
    d = decide_counts(loglik, alpha, tolerance, judge.direction, promote_loglik=promote_loglik,
                      promote_rate=promote_rate, dispersion=noise.dispersion, margin=shift, pod_alpha=pod_alpha,
                      promote_margin=promote_shift, promote_pod_alpha=promote_pod_alpha,
                      rate_dispersion=rate_phi)  # fmt: skip
    failed, within = bool(d.failed), bool(d.successful) and not fresh
    canary_upper = (rate_upper_bound(events, requests, alpha, negligible)
                    if negligible is not None and requests > 0 else None)  # fmt: skip
    lower, upper = math.exp(float(d.lower)), math.exp(float(d.upper))
    e_value = math.exp(min(float(d.log_e_fail), 700.0))
    e_promote = math.exp(min(float(d.log_e_promote), 700.0))
    cr = state.canary_events / state.canary_requests if state.canary_requests > 0 else None
    kr = state.control_events / state.control_requests if state.control_requests > 0 else None
    ratio = cr / kr if cr is not None and kr else None
    what = "slow" if latency else "errors"
    side = (f"canary {_rate(cr)} {what} ({_int(state.canary_events)}/{_int(state.canary_requests)}) vs "
            f"{judge.compare_to} {_rate(kr)} ({_int(state.control_events)}/{_int(state.control_requests)})")
    if latency and state.tail_le is not None:
        side = f"share slower than {_num(state.tail_le)} s (the {judge.compare_to}'s p{_q(judge.quantile)}): " + side
        side += _quantiles(judge, state)
    # Each end of the sequence holds with 1 - alpha, so both together with 1 - 2 alpha: say that level.
    cs = f"{_confidence(2 * alpha)} confidence sequence {_num(lower)}–{_num(upper)}"  # noqa: RUF001
    # Each test's threshold is 1 / (its share of alpha): the pods' spread takes the rest.
    threshold, promote_threshold = 1 / (alpha - pod_alpha), 1 / (alpha - promote_pod_alpha)
    beyond = "beyond" if judge.direction is Direction.HIGHER_IS_WORSE else "below"
    tol = f"tolerance {_num(tolerance)}x"
    if latency:
        tol += f" (p{_q(judge.quantile)} +{_num((judge.effective_tolerance - 1) * 100)} %)"
    within_text = f"within it {_num(e_promote)}"
    if promote_rate is not None and negligible is not None:
        within_text += f" (averaged with the evidence of errors below the negligible rate {_rate(negligible)})"
    beyond_text = f"{beyond} it {_num(e_value)}"
    # The deciding e-value comes last, next to its threshold and the decision.
    evidence_text = (f"evidence against the {tol}: {within_text} (promotes at {_num(promote_threshold)}), "
                     f"{beyond_text} {'>=' if failed else '<'} {_num(threshold)}" if not within else
                     f"evidence against the {tol}: {beyond_text}, {within_text} >= {_num(promote_threshold)}")
    shared = _shared_outage(state, kr, ratio, tolerance)
    if failed:
        outcome, why, decision = Outcome.FAILED, "regression", "-> rollback"
    elif within:
        ratio_shown = d.upper <= center(tolerance, judge.direction) + 1e-9 if judge.direction is \
            Direction.HIGHER_IS_WORSE else d.lower >= center(tolerance, judge.direction) - 1e-9
        if negligible is not None and not ratio_shown:
            outcome, why = Outcome.SUCCESSFUL, "negligible-errors"
            decision = (f"so the canary's error rate is below {_rate(canary_upper)}, within the "
                        f"negligible rate {_rate(negligible)} -> promote")  # fmt: skip
        else:
            outcome, why, decision = Outcome.SUCCESSFUL, "within-tolerance", "-> promote"
    else:
        outcome, why, decision = Outcome.RUNNING, reason or "collecting", f"undecided ({tol})"
    if latency and state.tail_le is None and state.started_at is not None:
        outcome, why = Outcome.RUNNING, reason or "no-tail-bound"
        decision = "undecided: the control's histogram had no requests above any finite bucket before the first look"
    ratio_text = f"ratio {_num(ratio)}" if ratio is not None else "ratio n/a"
    bound = f"{alpha_note(alpha * checks, checks)} (the same for promoting a version beyond its tolerance)"
    message = f"{prefix}{side}; {ratio_text}, {cs}; {evidence_text} {decision}; {bound}"
    message += f"; {_noise_text(judge, noise, shift, promote_shift, tolerance, k, m, state)}"
    if shared:
        message += (f"; the {judge.compare_to} degraded too ({_rate(kr)} now vs {_rate(state.history_rate)} "
                    "before the rollout): a shared cause, not the canary")
    verdict = JudgeVerdict(
        check=check.name, outcome=outcome, reason=why, message=message, alpha=alpha, evidence=e_value,
        estimate=ratio, lower=lower, upper=upper, canary_value=cr, control_value=kr, shared_outage=shared,
    )  # fmt: skip
    if outcome is Outcome.RUNNING:
        worse = ratio is not None and (ratio > tolerance if judge.direction is Direction.HIGHER_IS_WORSE
                                       else ratio < 1 / tolerance)  # fmt: skip
        boundary = tolerance * math.exp(shift) if worse else tolerance * math.exp(-promote_shift)
        needed = _needed(state, alpha - (pod_alpha if worse else promote_pod_alpha), boundary, ratio,
                         judge.direction, noise.dispersion)  # fmt: skip
        seen = ratio if ratio is not None else 1.0
        low, high = tolerance * math.exp(-promote_shift), tolerance * math.exp(shift)
        if judge.direction is Direction.LOWER_IS_WORSE:
            low, high = 1 / high, 1 / low
        if (promote_shift > 0 or shift > 0) and low < seen < high:
            # Between what the pods let the judge show: more traffic narrows the sequence, not the margin.
            needed = {"needed_requests": math.inf, "needed_seconds": None}
        verdict = verdict.model_copy(update=needed)
    return verdict


def _noise_text(judge: Judge, noise: Noise, shift: float, promote_shift: float, tolerance: float, k: int, m: int,
                state: JudgeState) -> str:  # fmt: skip
    """What the service's noise costs: where it comes from, and the ratios the judge can show with these pods."""
    text = noise.describe()
    if judge.kind is JudgeKind.LATENCY and noise.source == "default":
        text = "latency: " + text
    if shift <= 0:
        return text
    pods = (f"{state.canary_pods or 'an unknown number of'} canary pod{'s' if state.canary_pods != 1 else ''} vs "
            f"{state.control_pods or 'an unknown number of'} {judge.compare_to} pods")  # fmt: skip
    up, down = tolerance * math.exp(shift), tolerance * math.exp(-promote_shift)
    if judge.direction is Direction.LOWER_IS_WORSE:
        up, down = 1 / up, 1 / down
    text += (f"; with {pods} the canary is judged as a version, not as a pod: it is rolled back only when shown "
             f"{'beyond' if judge.direction is Direction.HIGHER_IS_WORSE else 'below'} {_num(up)}x and promoted "
             f"only when shown {'below' if judge.direction is Direction.HIGHER_IS_WORSE else 'above'} {_num(down)}x")
    if (down < 1) == (judge.direction is Direction.HIGHER_IS_WORSE):
        text += (" (so an unchanged version can seldom be promoted: more canary pods, or a baseline of as many, "
                 "narrow this)")
    return text


def _shared_outage(state: JudgeState, control_rate: float | None, ratio: float | None, tolerance: float) -> bool:
    if control_rate is None or state.history_rate is None or state.control_events < 10:
        return False
    degraded = control_rate >= 2 * max(state.history_rate, 1e-9)
    return degraded and ratio is not None and ratio <= tolerance


def _needed(state: JudgeState, alpha: float, tolerance: float, ratio: float | None,
            direction: Direction = Direction.HIGHER_IS_WORSE, dispersion: float = 1.0) -> dict[str, float | None]:
    """Roughly how many more requests until one of the two e-values can reach ``1/alpha``.

    The distance that has to be shown is the one between the observed ratio (1 before any event) and the
    tolerance, in log(rho); the events needed follow from the mixture's normal approximation (information
    ``q (1 - q)`` per event). A ratio right at the tolerance needs ever more: that is said as it is.
    """
    n = state.canary_requests + state.control_requests
    events = state.canary_events + state.control_events
    if n <= 0 or state.canary_requests <= 0 or state.control_requests <= 0:
        return {"needed_requests": None, "needed_seconds": None}
    q = state.canary_requests / n
    rate = max(events, 1.0) / n
    beta = math.log(ratio) if ratio and ratio > 0 else 0.0
    gap = max(abs(beta - center(tolerance, direction)), 0.005)
    info_per_event = q * (1 - q)
    needed_events = max(events, 1.0)
    for _ in range(200):
        info = needed_events * info_per_event
        v = info * PRIOR_SD**2
        # A normal mixture's log e-value when the estimate sits ``gap`` from the boundary.
        if info * gap**2 * v / (2 * (1 + v)) - 0.5 * math.log(1 + v) >= math.log(1 / alpha):
            break
        needed_events *= 1.25
    needed_events *= dispersion  # quasi-likelihood: each event carries 1/phi of its information
    more = max(needed_events - events, 1.0) / rate
    seconds = None
    if state.started_at and state.last_at and (elapsed := (state.last_at - state.started_at).total_seconds()) > 0:
        seconds = more / (n / elapsed)
    return {"needed_requests": more, "needed_seconds": seconds}


def _needed_text(v: JudgeVerdict) -> str:
    if v.needed_requests is None:
        return "; no traffic reached both sides"
    if math.isinf(v.needed_requests):
        return ("; no decision is expected while the ratio stays between what the pods let the judge show, "
                "whatever the traffic")
    text = f"; roughly {_int(v.needed_requests)} more requests needed"
    if v.needed_seconds is not None:
        text += f" (about {_duration(v.needed_seconds)} at the current rate)"
    return text


def _gauge_verdict(check: Check, judge: Judge, state: JudgeState, alpha: float, reason: str,
                   prefix: str, checks: int = 1) -> JudgeVerdict:  # fmt: skip
    n = state.gauge_n
    variance = state.gauge_m2 / (n - 1) if n > 1 else 0.0
    radius = float(gauge_radius(n, variance, alpha)) if n >= MIN_GAUGE_LOOKS else math.inf
    lower, upper = state.gauge_mean - radius, state.gauge_mean + radius
    tol = judge.effective_tolerance - 1
    if judge.direction is Direction.HIGHER_IS_WORSE:
        failed, within = lower > tol, upper <= tol
    else:
        failed, within = upper < -tol, lower >= -tol
    side = (f"canary mean {_num(state.canary_gauge)} vs {judge.compare_to} {_num(state.control_gauge)} "
            f"(last look); difference {_signed_pct(state.gauge_mean)} over {n} looks")
    cs = (f"{_confidence(alpha)} confidence sequence {_signed_pct(lower)} to {_signed_pct(upper)}"
          if math.isfinite(radius) else f"confidence sequence after {MIN_GAUGE_LOOKS} looks")
    if failed:
        outcome, why, decision = Outcome.FAILED, "regression", f"beyond the tolerance {_signed_pct(tol)} -> rollback"
    elif within:
        outcome, why = Outcome.SUCCESSFUL, "within-tolerance"
        decision = f"within tolerance {_signed_pct(tol)} -> promote"
    else:
        outcome, why, decision = Outcome.RUNNING, reason or "collecting", f"undecided (tolerance {_signed_pct(tol)})"
    # Gauge readings (memory above all) are autocorrelated from look to look, which this sequence assumes
    # they are not: identical versions were rolled back 3 % (independent looks) to 42 % (autocorrelated)
    # at alpha 1 %. So no bound is stated until one survives autocorrelation.
    message = (f"{prefix}{side}; {cs} (asymptotic, for independent looks) {decision}; no false-rollback bound "
               "is stated for gauges: their readings are autocorrelated, which this sequence does not allow for")
    return JudgeVerdict(
        check=check.name, outcome=outcome, reason=why, message=message, alpha=alpha,
        estimate=state.gauge_mean if n else None, lower=lower if n >= MIN_GAUGE_LOOKS else None,
        upper=upper if n >= MIN_GAUGE_LOOKS else None, canary_value=state.canary_gauge or None,
        control_value=state.control_gauge or None,
    )  # fmt: skip


def _quantiles(judge: Judge, state: JudgeState) -> str:
    if not state.bucket_les:
        return ""
    q = judge.quantile
    c = _quantile(state.bucket_les, state.canary_buckets, q)
    k = _quantile(state.bucket_les, state.control_buckets, q)
    if c is None or k is None:
        return ""
    return f"; p{_q(q)} about {_num(c)} s vs {_num(k)} s"


def _quantile(les: list[float], cumulative: list[float], q: float) -> float | None:
    """``histogram_quantile`` on accumulated cumulative bucket counts (linear within a bucket)."""
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in zip(les, cumulative, strict=True):
        if c >= rank:
            if not math.isfinite(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 1.0)
        prev_le, prev_c = le, c
    return None


def _rate(x: float | None) -> str:
    if x is None:
        return "n/a"
    v = x * 100
    return f"{v:.2g} %" if v < 1 else f"{v:.1f} %" if v < 10 else f"{v:.3g} %"


def _confidence(alpha: float) -> str:
    """1 - alpha as people say it: 99 %, 99.5 %, 99.67 % (never rounded up to 100 %)."""
    return f"{math.floor((1 - alpha) * 10000) / 100:g} %"


def _pct(x: float, digits: int | None = None) -> str:
    return f"{x * 100:.{digits}f} %" if digits is not None else f"{x * 100:g} %"


def _signed_pct(x: float) -> str:
    return f"{x * 100:+.3g} %"


def _num(x: float | None) -> str:
    if x is None:
        return "n/a"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.3g}"
    return f"{x:.1f}" if x >= 1 else f"{x:.2g}"


def _int(x: float) -> str:
    return f"{round(x):,}"


def _q(q: float) -> str:
    return f"{q * 100:g}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- what the activity takes and gives ----------------------------------------------------------------


class JudgeLookRequest(_Data):
    """Read one look of ``check`` and fold it into ``state``.

    A canary gives ``variables`` only: the sides are the canary and the judge's ``compareTo`` track. A
    flag ramp also gives ``control_variables`` (e.g. another ``variant``): the sides are then the two
    variable sets, rendered with the canary's and the stable's track matcher respectively.
    """

    check: Check
    variables: dict[str, str]
    control_variables: dict[str, str] | None = None
    state: JudgeState = Field(default_factory=JudgeState)
    alpha: float
    checks: int = 1
    """How many judge checks share the rollout's bound (``alpha`` is this check's share)."""
    at: datetime | None = None


class JudgeLookResult(_Data):
    state: JudgeState
    verdict: JudgeVerdict
    measurement: Measurement


class JudgeFinishRequest(_Data):
    check: Check
    state: JudgeState
    alpha: float
    checks: int = 1
