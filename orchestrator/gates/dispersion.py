"""How noisy the service is, measured on its own stable pods before the first look: dispersion and pod spread.

The judge's count test models each request as an independent coin toss. Real services break that in
two ways, and this module measures both on the stable's own per-pod history (the hour before the
rollout, at the judge's look interval; ``gates.counts.read_noise`` reads it), so the test can allow for
them:

* **dispersion between looks** (``dispersion``, phi): a pod's errors per look vary more than binomially
  (bursts, retries that multiply one failure, a per-10 s error rate that wanders). Measured as the
  pooled Pearson statistic of each pod's per-look errors around its own rate::

      phi = sum_p T_p/(T_p - 1) * sum_t (e_pt - r_p n_pt)^2  /  sum_p r_p (1 - r_p) sum_t n_pt

  (1 under the binomial model; each pod's own rate ``r_p`` so the spread between pods does not count
  here). The judge divides its log-likelihoods by phi: the quasi-likelihood scaling. A heuristic, not an
  anytime-valid guarantee -- chosen over a betting confidence sequence because it keeps the conditional
  test's power and its exactness under changing splits, costs nothing per look, and the benchmark
  measures where it holds (``docs/judge.md`` gives the trade and the figures).

* **spread between pods** (``pod_sd``, sigma): pods of one version differ in their base error rate
  (nodes, caches, shards). A canary of ``k`` pods against ``m`` control pods then differs from its
  control by ``exp(delta)`` with ``delta ~ N(0, sigma^2 (1/k + 1/m))`` even when the versions are the
  same: evidence about the ratio does not shrink that. The null is therefore "the canary's pods are
  exchangeable with the control's": a rollback spends half of alpha on the pods (a promotion a tenth) and
  tests the rest against the tolerance moved by a ``margin`` of ``t * sigma * sqrt(1/k + 1/m)`` in
  log(ratio), with ``t`` the Student quantile for the ``m_history - 1`` degrees of freedom the spread was
  estimated with (a prediction interval: the estimate's own uncertainty is in it). Sigma is the sample variance of
  the pods' log rates minus their sampling variance (phi / errors), floored at 0.

Where there is no history (a new service, a fresh baseline, a histogram judge, whose history is not read),
``DEFAULT`` applies and every verdict says so: phi 2 and sigma 0.3, the middle and the top of the
conditions measured in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from scipy.stats import norm
from scipy.stats import t as student_t

Array = NDArray[np.float64]

DEFAULT_DISPERSION = 2.0
DEFAULT_POD_SD = 0.3
DEFAULT_LATENCY_POD_SD = 0.05
"""Pods' latencies differ by 5 % (sd); a latency judge turns it into slow-share terms (``for_latency``)."""
MIN_LOOKS = 30
"""A pod's history counts only with at least this many looks (a few minutes at 10 s)."""


class PodMoments(BaseModel):
    """One stable pod's per-look counts over its history, as sums (what a PromQL subquery can give)."""

    model_config = ConfigDict(frozen=True)

    looks: float
    n: float
    e: float
    nn: float
    ee: float
    en: float


class Noise(BaseModel):
    """The service's dispersion and pod spread, and where they come from."""

    model_config = ConfigDict(frozen=True)

    dispersion: float = DEFAULT_DISPERSION
    pod_sd: float = DEFAULT_POD_SD
    pods: int = 0
    """Stable pods the spread was estimated on (0: the default)."""
    looks: int = 0
    source: Literal["history", "default", "declared"] = "default"
    latency_sd: float | None = None
    """For a latency judge: the pods' spread in latency terms that ``pod_sd`` (slow-share terms) came from."""

    def describe(self) -> str:
        if self.source == "declared":
            return "requests taken as independent and pods as identical (declared by the caller, not measured)"
        if self.source == "default" and self.latency_sd is not None:
            return (f"no latency history of the stable: the conservative default is used (slow requests "
                    f"{self.dispersion:g}x as variable between looks as independent requests, pods' latencies "
                    f"±{self.latency_sd * 100:.0f} %, ±{self.pod_sd * 100:.0f} % in the slow share)")
        if self.source == "default" and self.pod_sd == 0:
            return (f"both variants run on the same pods, so pods add no spread between them; no history: the "
                    f"conservative default dispersion is used (errors {self.dispersion:g}x as variable between "
                    "looks as independent requests; the negligible-rate evidence as for independent requests)")
        if self.source == "default":
            return (f"no history of the stable: the conservative default is used (errors {self.dispersion:g}x as "
                    f"variable between looks as independent requests, pods ±{self.pod_sd * 100:.0f} %; the "
                    "negligible-rate evidence as for independent requests)")
        return (f"from the stable's history ({self.pods} pods, {self.looks} looks): errors "
                f"{self.dispersion:.2g}x as variable between looks as independent requests, pods differ by "
                f"±{self.pod_sd * 100:.0f} %")


DEFAULT = Noise()
PAIRED = Noise(pod_sd=0.0)
"""A flag ramp's default: both variants on the same pods (no pod spread between them), dispersion as stated."""
INDEPENDENT = Noise(dispersion=1.0, pod_sd=0.0, source="declared")
"""The judge's original model (independent requests, identical pods): for simulations that hold it true."""


def for_latency(tail_ratio: float, tolerance: float) -> Noise:
    """The default for a latency judge: the pods' latency spread turned into slow-share terms with the slope the
    tolerance conversion found (``log tail_ratio / log tolerance``: how fast the slow share moves with latency)."""
    slope = math.log(tail_ratio) / math.log(tolerance) if tolerance > 1 and tail_ratio > 1 else 1.0
    return Noise(pod_sd=slope * math.log(1 + DEFAULT_LATENCY_POD_SD), latency_sd=DEFAULT_LATENCY_POD_SD)


def estimate_arrays(looks: Any, n: Any, e: Any, nn: Any, ee: Any, en: Any) -> tuple[Array, Array]:
    """(phi, sigma) from per-pod moments: arrays with pods on the last axis (leading axes: many services).

    Pods with fewer than ``MIN_LOOKS`` looks or no requests are left out (``looks`` 0 marks an absent pod).
    """
    looks, n, e, nn, ee, en = (np.asarray(x, dtype=np.float64) for x in (looks, n, e, nn, ee, en))
    used = (looks >= MIN_LOOKS) & (n > 0)
    rate = np.where(used, e / np.where(n > 0, n, 1.0), 0.0)
    rss = ee - 2 * rate * en + rate**2 * nn
    scale = np.where(used, looks / np.maximum(looks - 1, 1), 0.0)
    numerator = np.sum(np.where(used, scale * np.maximum(rss, 0.0), 0.0), axis=-1)
    denominator = np.sum(np.where(used, rate * (1 - rate) * n, 0.0), axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        phi = np.where(denominator > 0, numerator / denominator, DEFAULT_DISPERSION)
    phi = np.maximum(phi, 1.0)
    pods = used.sum(axis=-1)
    log_rate = np.log((e + 0.5) / (n + 0.5))
    mean = np.sum(np.where(used, log_rate, 0.0), axis=-1) / np.maximum(pods, 1)
    var = np.sum(np.where(used, (log_rate - mean[..., None]) ** 2, 0.0), axis=-1) / np.maximum(pods - 1, 1)
    noise = np.sum(np.where(used, phi[..., None] / (e + 0.5), 0.0), axis=-1) / np.maximum(pods, 1)
    sigma = np.where(pods >= 2, np.sqrt(np.maximum(var - noise, 0.0)), DEFAULT_POD_SD)
    return np.asarray(phi), np.asarray(sigma)


def estimate(pods: list[PodMoments]) -> Noise:
    """``Noise`` from the stable pods' moments; ``DEFAULT`` when fewer than two pods have enough history."""
    usable = [p for p in pods if p.looks >= MIN_LOOKS and p.n > 0]
    if len(usable) < 2 or sum(p.e for p in usable) <= 0:
        return DEFAULT
    arrays = [np.array([getattr(p, f) for p in usable]) for f in ("looks", "n", "e", "nn", "ee", "en")]
    phi, sigma = estimate_arrays(*arrays)
    return Noise(dispersion=float(phi), pod_sd=float(sigma), pods=len(usable),
                 looks=int(min(p.looks for p in usable)), source="history")  # fmt: skip


ROLLBACK_SHARE = 0.5
"""The part of alpha a rollback spends on the pods' spread (the test itself runs at the rest)."""
PROMOTE_SHARE = 0.1
"""The part of alpha a promotion spends on it: small, so the negligible-rate route (which the pods do not
confound) keeps most of alpha, at the price of a wider margin for promotions shown on the ratio."""


def quantile(share: Any, history_pods: Any) -> Array:
    """The one-sided ``1 - share`` quantile of the pod effect: Student with ``pods - 1`` degrees of freedom
    when the spread was estimated on ``pods`` pods, normal for the default (``pods`` 0)."""
    pods = np.asarray(history_pods, dtype=np.float64)
    level = 1 - np.asarray(share, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        t = student_t.ppf(level, np.maximum(pods - 1, 1))
    return np.asarray(np.where(pods >= 2, t, norm.ppf(level)), dtype=np.float64)


def margin(sigma: Any, canary_pods: Any, control_pods: Any, share: Any, history_pods: Any) -> Array:
    """How far (in log ratio) a boundary moves for ``k`` canary and ``m`` control pods, when ``share`` of
    alpha is spent on the pods: the pods' effect exceeds it with probability at most ``share``."""
    k = np.maximum(np.asarray(canary_pods, dtype=np.float64), 1.0)
    m = np.maximum(np.asarray(control_pods, dtype=np.float64), 1.0)
    with np.errstate(invalid="ignore"):  # a zero share with a zero sigma: no margin
        value = np.nan_to_num(quantile(share, history_pods) * np.asarray(sigma), nan=0.0)
    return np.asarray(value * np.sqrt(1 / k + 1 / m), dtype=np.float64)


def best_shown(tolerance: float, margin_log: float) -> float:
    """The smallest ratio the judge can roll back: the tolerance moved up by the margin."""
    return tolerance * math.exp(margin_log)
