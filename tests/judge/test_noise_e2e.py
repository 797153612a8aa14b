"""The stable's dispersion and pod spread, read from a real Prometheus with backfilled per-pod history (issue 20, 3).

Given an hour of four stable pods scraped every 10 s, whose base error rates differ (log sd 0.3) and whose
errors come in clusters (mean size 2, so 3x the variance of independent requests),
when the judge's first look reads the stable's history,
then the PromQL sums give exactly the moments of the per-look counts (computed here from the same numbers),
the estimates land near the truth, and the verdict names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.gates.counts import read_look, read_noise
from orchestrator.gates.dispersion import PodMoments, estimate
from orchestrator.gates.judge import JudgeState, judge_update
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.specs.checks import Check
from tests.judge.backfill import openmetrics, prometheus

START = datetime(2024, 7, 1, tzinfo=UTC)
HOUR = 3600
STEP = 10
RPS = 20
BASE = 0.005
# Log offsets of the four pods' error rates: sample sd exactly 0.3.
OFFSETS = np.array([-1.5, -0.5, 0.5, 1.5]) * 0.3 / np.std([-1.5, -0.5, 0.5, 1.5], ddof=1)
CHECK = Check.model_validate({"name": "errors", "interval": "10s", "judge": {
    "errors": 'sum by (pod) (http_requests_total{app="noisy",{{track_selector}},code="500"})',
    "requests": 'sum by (pod) (http_requests_total{app="noisy",{{track_selector}}})',
    "tolerance": "1.2x"}})  # fmt: skip


def _per_look() -> tuple[np.ndarray, np.ndarray]:
    """Per pod and look: requests, and errors in clusters (geometric sizes, mean 2)."""
    rng = np.random.default_rng(7)
    looks = HOUR // STEP + 6
    n = rng.poisson(RPS * STEP, (4, looks))
    clusters = rng.binomial(n, (BASE * np.exp(OFFSETS))[:, None] / 2)
    sizes = np.zeros_like(clusters)
    for index, count in np.ndenumerate(clusters):
        sizes[index] = rng.geometric(0.5, count).sum() if count else 0
    return n, np.minimum(sizes, n)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return _per_look()


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory, data: tuple[np.ndarray, np.ndarray]) -> Iterator[PrometheusProvider]:
    lines = openmetrics(*data, app="noisy", start=START, step=STEP)
    with prometheus(tmp_path_factory.mktemp("noise-prom"), lines) as url:
        yield PrometheusProvider(PrometheusSettings(url=url))


AT = START + timedelta(seconds=HOUR + 5 * STEP)


def test_the_promql_sums_are_the_moments_of_the_per_look_counts(
    prom: PrometheusProvider, data: tuple[np.ndarray, np.ndarray]
) -> None:
    n, e = data
    noise = read_noise(prom, CHECK, {}, AT, 10.0)
    # The window (AT - 1 h, AT] holds 360 looks' increments: those of looks 6 .. 365 (1-based readings).
    window = slice(5, 5 + HOUR // STEP)
    direct = estimate([PodMoments(looks=HOUR / STEP, n=float(n[p, window].sum()), e=float(e[p, window].sum()),
                                  nn=float((n[p, window] ** 2).sum()), ee=float((e[p, window] ** 2).sum()),
                                  en=float((n[p, window] * e[p, window]).sum())) for p in range(4)])  # fmt: skip
    assert noise.source == "history" and noise.pods == 4
    assert noise.dispersion == pytest.approx(direct.dispersion, rel=0.02)
    assert noise.pod_sd == pytest.approx(direct.pod_sd, rel=0.05, abs=0.01)


def test_the_estimates_land_near_the_truth_and_the_verdict_names_them(prom: PrometheusProvider) -> None:
    noise = read_noise(prom, CHECK, {}, AT, 10.0)
    # Clusters of geometric size with mean 2 have E[s^2] / E[s] = 3: three times the binomial variance.
    assert 2.4 < noise.dispersion < 3.6, noise
    assert 0.2 < noise.pod_sd < 0.4, noise
    look = read_look(prom, CHECK, {}, JudgeState(), AT, service=True)
    _, verdict = judge_update(CHECK, JudgeState(), look, alpha=0.01)
    assert "from the stable's history (4 pods, 36" in verdict.message, verdict.message  # 360 looks, and the ends
    assert "pods differ by ±" in verdict.message


def test_a_window_without_history_is_the_stated_default(prom: PrometheusProvider) -> None:
    noise = read_noise(prom, CHECK, {}, START - timedelta(days=1), 10.0)
    assert noise.source == "default"
