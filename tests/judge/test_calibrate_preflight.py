"""Know before you start: `canary run`'s pre-flight sizes each judged step on the stable's current traffic.

Given the stable's last twenty minutes backfilled into a real Prometheus (four pods, 100 rps each, 1 %
errors, ending half a minute ago),
when a rollout judges a 10-minute step at 5 % weight with a 1.2x tolerance,
then the pre-flight warns that the step cannot decide in its time and names what would, and with
`strictPlan: true` the run is refused (exit 1); a step that can decide passes without a word either way.
Without the pre-flight (`--no-preflight`, a CI machine that cannot reach Prometheus) the run says the steps
were not sized, and a strict plan is refused before anything is started.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli.canary import judge_preflight
from orchestrator.config import PrometheusSettings, Settings
from orchestrator.errors import RefusedError
from orchestrator.specs.canary import CanaryRollout
from orchestrator.specs.loader import load_file
from tests.frontdoor.helpers import assert_one_line, invoke
from tests.judge.backfill import openmetrics, prometheus

pytestmark = pytest.mark.timeout(120)

STEP = 10
LOOKS = 20 * 60 // STEP

SPEC = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata:
  name: quiet
spec:
  target: {namespace: shop, deployment: quiet}
  change: {image: registry.local/quiet:2.0.0}
  baseline: true
  strictPlan: STRICT
  steps:
    - setWeight: WEIGHT
    - analysis:
        duration: DURATION
        checks:
          - name: errors
            interval: 10s
            judge:
              compareTo: baseline
              errors: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code="500"})
              requests: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})
              tolerance: TOLERANCE
"""


def spec(tmp_path: Path, *, strict: bool, weight: int = 5, duration: str = "2m", tolerance: str = "1.2x") -> Path:
    path = tmp_path / f"quiet-{strict}-{weight}-{duration}.yaml"
    path.write_text(SPEC.replace("STRICT", str(strict).lower()).replace("WEIGHT", str(weight))
                    .replace("DURATION", duration).replace("TOLERANCE", tolerance))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    rng = np.random.default_rng(5)
    n = rng.poisson(100 * STEP, (4, LOOKS))
    e = rng.binomial(n, 0.01)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=STEP * LOOKS + 30)
    with prometheus(tmp_path_factory.mktemp("preflight-prom"),
                    openmetrics(n, e, app="quiet", start=start, step=STEP)) as address:
        yield address


def _load(path: Path) -> CanaryRollout:
    rollout = load_file(str(path))
    assert isinstance(rollout, CanaryRollout)
    return rollout


def test_a_step_that_cannot_decide_is_named_at_start_and_refused_when_strict(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Settings(prometheus=PrometheusSettings(url=url))
    loose = spec(tmp_path, strict=False, duration="10m")
    judge_preflight(s, _load(loose), str(loose), sized=True)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"{loose}: warning: pre-flight: step 2: errors at 5 % weight cannot promote"), line
    assert re.search(r"within its 10 min at the current traffic \(canary (19|20)(\.\d)? rps, 1 % errors\)", line), line
    assert "it would decide with a step of at least" in line, line
    # Far too short and too tight: nothing near decides it, and the run is told so.
    hopeless = spec(tmp_path, strict=False, weight=1, duration="20s", tolerance="1.05x")
    judge_preflight(s, _load(hopeless), str(hopeless), sized=True)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "nothing near decides it at this traffic (a step up to 10 min" in line, line
    strict = spec(tmp_path, strict=True, duration="10m")
    with pytest.raises(RefusedError, match=r"strictPlan: true refuses 1 judged step"):
        judge_preflight(s, _load(strict), str(strict), sized=True)


def test_a_step_that_can_decide_passes_even_when_strict(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Settings(prometheus=PrometheusSettings(url=url))
    ample = spec(tmp_path, strict=True, weight=50, duration="30m", tolerance="1.5x")
    judge_preflight(s, _load(ample), str(ample), sized=True)
    assert capsys.readouterr().err == ""


NOWHERE = {"ORCHESTRATOR_PROMETHEUS_URL": "http://127.0.0.1:1", "ORCHESTRATOR_TEMPORAL_ADDRESS": "127.0.0.1:1"}


def test_without_the_pre_flight_a_strict_plan_is_refused_before_anything_starts(tmp_path: Path) -> None:
    strict = spec(tmp_path, strict=True)
    outcome = invoke(["canary", "run", str(strict), "--no-preflight"], env=NOWHERE)
    assert outcome.code == 1, outcome.err
    warning, error = outcome.err_lines
    assert "warning: pre-flight: judged steps not sized against the current traffic: --no-preflight" in warning
    assert "strictPlan: true, and the judged steps could not be sized" in error and "nothing was started" in error
    # Not strict: it says so and goes on (to Temporal, unreachable here: exit 3, one line after the warning).
    loose = spec(tmp_path, strict=False)
    outcome = invoke(["canary", "run", str(loose), "--no-preflight"], env=NOWHERE)
    assert outcome.code == 3 and "judged steps not sized" in outcome.err_lines[0], outcome.err


def test_strict_plan_is_a_boolean(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(spec(tmp_path, strict=True).read_text().replace("strictPlan: true", "strictPlan: maybe"))
    outcome = invoke(["validate", str(path)])
    assert_one_line(outcome, 2, r"bad\.yaml:\d+: spec\.strictPlan: ")
