"""``orchestrator calibrate``: A/A tests of a spec's judge on per-pod history backfilled into a real Prometheus.

Given four hours of six stable pods scraped every 10 s, whose base error rates differ (log sd exactly 0.3)
and whose errors come in clusters (geometric sizes of mean 2: 3x the variance of independent requests),
when the spec's judge is calibrated on that history,
then the dispersion and the pod spread it reports hold the truth within their 95 % intervals, the A/A
false-rollback rate is compatible with the check's bound (its Clopper-Pearson interval reaches down to it),
every series was read with one range query, and the text and JSON outputs say the same.
Bad input is one line and exit 2 (before Prometheus is asked), an unreachable Prometheus exit 3.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from orchestrator.calibrate import Calibration, calibrate, estimate_queries
from orchestrator.config import PrometheusSettings
from orchestrator.gates.prometheus import PrometheusProvider, Series
from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.loader import load_file
from tests.frontdoor.helpers import assert_one_line, invoke
from tests.judge.backfill import openmetrics, prometheus

pytestmark = pytest.mark.timeout(180)

START = datetime(2024, 8, 1, tzinfo=UTC)
HOURS = 4
STEP = 10
PODS = 6
RPS = 20
BASE = 0.005
TRUE_PHI = 3.0  # geometric cluster sizes with mean 2: E[s^2] / E[s] = 3
TRUE_SIGMA = 0.3
OFFSETS = np.linspace(-1, 1, PODS) * TRUE_SIGMA / np.std(np.linspace(-1, 1, PODS), ddof=1)
FROM = START + timedelta(seconds=STEP)
TO = START + timedelta(hours=HOURS)

SPEC = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata:
  name: noisy
spec:
  target: {namespace: shop, deployment: noisy}
  change: {image: registry.local/noisy:2.0.0}
  baseline: true
  steps:
    - setWeight: 20
    - analysis:
        duration: 5m
        checks:
          - name: errors-20
            interval: 10s
            judge:
              compareTo: baseline
              errors: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code="500"})
              requests: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})
              tolerance: 1.2x
              maxFalseRollback: 1%
    - setWeight: 50
    - analysis:
        duration: 5m
        checks:
          - name: errors-50
            interval: 10s
            judge:
              compareTo: baseline
              errors: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code="500"})
              requests: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})
              tolerance: 1.2x
              maxFalseRollback: 1%
"""


def _per_look() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    looks = HOURS * 3600 // STEP
    n = rng.poisson(RPS * STEP, (PODS, looks))
    clusters = rng.binomial(n, (BASE * np.exp(OFFSETS))[:, None] / 2)
    sizes = np.zeros_like(clusters)
    for index, count in np.ndenumerate(clusters):
        sizes[index] = rng.geometric(0.5, count).sum() if count else 0
    return n, np.minimum(sizes, n)


class Counting:
    """The real provider, counting the range queries it is asked (a wrapper, not a stand-in)."""

    def __init__(self, provider: PrometheusProvider) -> None:
        self.provider = provider
        self.asked: list[str] = []

    def query_range(self, promql: str, start: datetime, end: datetime, step_seconds: float) -> list[Series]:
        self.asked.append(promql)
        return self.provider.query_range(promql, start, end, step_seconds)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prometheus(tmp_path_factory.mktemp("calibrate-prom"),
                    openmetrics(*_per_look(), app="noisy", start=START, step=STEP)) as address:
        yield address


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calibrate-spec") / "noisy.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def result(url: str, spec_path: Path) -> tuple[Calibration, list[str]]:
    provider = Counting(PrometheusProvider(PrometheusSettings(url=url)))
    return calibrate(load_file(str(spec_path)), provider, FROM, TO, splits=100, seed=3), provider.asked


def test_the_estimates_hold_the_truth_within_their_intervals(result: tuple[Calibration, list[str]]) -> None:
    calibration, _ = result
    check = calibration.checks[0]
    assert check.calibrated and check.pods == PODS, check
    assert check.dispersion_interval is not None and check.pod_spread_interval is not None
    assert check.dispersion_interval.low <= TRUE_PHI <= check.dispersion_interval.high, check
    assert check.pod_spread_interval.low <= TRUE_SIGMA <= check.pod_spread_interval.high, check
    # And the point estimates are near the truth, not merely inside wide intervals.
    assert check.dispersion == pytest.approx(TRUE_PHI, rel=0.2) and check.pod_spread == pytest.approx(0.3, abs=0.12)


def test_the_a_a_false_rollback_rate_is_within_its_interval_of_the_bound(
    result: tuple[Calibration, list[str]],
) -> None:
    calibration, _ = result
    for check in calibration.checks:
        assert check.splits == 100 and check.rollbacks + check.promotions + check.not_enough_traffic == 100
        rate, bound, interval = check.false_rollback_rate, check.bound, check.interval
        assert interval is not None and rate is not None and bound is not None
        assert bound == pytest.approx(0.005)  # 1 % over two judge checks
        assert interval.low <= rate <= interval.high
        assert interval.low <= bound, check  # compatible with the bound
    rollout, interval = calibration.rollout_bound, calibration.rollout_interval
    assert interval is not None and rollout == pytest.approx(0.01)
    assert rollout is not None and interval.low <= rollout
    assert calibration.rollout_rollbacks >= max(c.rollbacks for c in calibration.checks)
    # Each step says what it can catch at this traffic: with 1 vs 1 pods at 20 %, only far beyond the
    # tolerance (the pods' spread), with 3 vs 3 at 50 % less far.
    (first,), (second,) = (c.steps for c in calibration.checks)
    assert (first.canary_pods, first.control_pods, second.canary_pods, second.control_pods) == (1, 1, 3, 3)
    if first.smallest_caught is not None:
        assert second.smallest_caught is not None and second.smallest_caught < first.smallest_caught
    assert second.smallest_caught is not None and second.smallest_caught > 1.2


def test_each_series_is_read_with_one_range_query(result: tuple[Calibration, list[str]], spec_path: Path) -> None:
    calibration, asked = result
    spec = load_file(str(spec_path))
    assert isinstance(spec, CanaryRollout)
    # Both checks read the same two series: each is asked once.
    assert len(asked) == 2 == calibration.queries == estimate_queries(spec, FROM, TO)
    assert len(set(asked)) == 2 and all('track!~"canary|baseline"' in q for q in asked)


def test_the_cli_prints_text_and_json(url: str, spec_path: Path) -> None:
    window = ["--from", FROM.isoformat(), "--to", TO.isoformat(), "--splits", "10"]
    env = {"ORCHESTRATOR_PROMETHEUS_URL": url}
    text = invoke(["calibrate", str(spec_path), *window], env=env)
    assert text.code == 0, text.err
    assert "errors-20: identical versions rolled back" in text.out and "95 % interval" in text.out
    assert "as variable between looks" in text.out and "pods differ by ±" in text.out
    assert "step 4 at 50 % weight (3 canary vs 3 control pods" in text.out
    out = invoke(["calibrate", str(spec_path), *window, "-o", "json"], env=env)
    assert out.code == 0, out.err
    data = json.loads(out.out)
    assert data["from"].startswith("2024-08-01T00:00:10") and data["splits"] == 10
    check = data["checks"][1]
    assert check["check"] == "errors-50" and check["pods"] == PODS and set(check["interval"]) == {"low", "high"}
    assert f"rolled back {check['rollbacks']}/10" in text.out


NOWHERE = {"ORCHESTRATOR_PROMETHEUS_URL": "http://127.0.0.1:1"}


@pytest.mark.parametrize(("extra", "pattern"), [
    (["--from", "2024-08-01T02:00Z", "--to", "2024-08-01T01:00Z"], r"^<command line>:0: --to: "),
    (["--from", "yesterday", "--to", "2024-08-01T01:00Z"], r"^<command line>:0: --from: "),
    (["--from", "2024-08-01T00:00Z", "--to", "2024-08-01T04:00Z", "--splits", "0"], r"^<command line>:0: --splits: "),
    (["--from", "2024-08-01T00:00Z", "--to", "2024-08-01T04:00Z", "--seed", "-1"], r"^<command line>:0: --seed: "),
    # Two range queries are needed: a limit of one is refused before Prometheus is asked (else exit 3).
    (["--from", "2024-08-01T00:00Z", "--to", "2024-08-01T04:00Z", "--max-queries", "1"],
     r"noisy\.yaml:0: calibrate: this window would send 2 queries \(limit 1\)"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(extra: list[str], pattern: str, spec_path: Path) -> None:
    assert_one_line(invoke(["calibrate", str(spec_path), *extra], env=NOWHERE), 2, pattern)


def test_a_flag_ramp_or_a_window_shorter_than_a_rollout_is_exit_2(url: str, spec_path: Path, tmp_path: Path) -> None:
    ramp = Path(__file__).parents[2] / "examples" / "judge-flag-ramp.yaml"
    outcome = invoke(["calibrate", str(ramp), "--from", "2024-08-01T00:00Z", "--to", "2024-08-01T04:00Z"], env=NOWHERE)
    assert_one_line(outcome, 2, r"judge-flag-ramp\.yaml:0: kind: calibrate takes a CanaryRollout")
    short = ["--from", FROM.isoformat(), "--to", (FROM + timedelta(minutes=5)).isoformat()]
    outcome = invoke(["calibrate", str(spec_path), *short], env={"ORCHESTRATOR_PROMETHEUS_URL": url})
    assert_one_line(outcome, 2, r"noisy\.yaml:0: calibrate: check errors-20: one rollout takes \d+ s, longer than")


def test_an_unreachable_prometheus_is_one_line_and_exit_3(spec_path: Path) -> None:
    outcome = invoke(["calibrate", str(spec_path), "--from", "2024-08-01T00:00Z", "--to", "2024-08-01T04:00Z"],
                     env=NOWHERE)
    assert_one_line(outcome, 3, r"127\.0\.0\.1:1")
