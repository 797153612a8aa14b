"""``orchestrator replay`` over backfilled history with a regression at a known time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.replay import replay
from orchestrator.specs.loader import load_file
from tests.ecosystem.prom_history import REGRESSION_AT, T0

pytestmark = pytest.mark.timeout(120)

SPEC = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata:
  name: {app}
spec:
  target: {{namespace: shop, deployment: {app}}}
  change: {{image: registry.local/{app}:2.0.0}}
  steps:
    - setWeight: 20
    - analysis:
        checks:
          - name: error-rate
            query: &q |
              sum(rate(http_requests_total{{namespace="{{{{namespace}}}}",app="{{{{app}}}}",{{{{track_selector}}}},code=~"5.."}}[1m]))
              /
              sum(rate(http_requests_total{{namespace="{{{{namespace}}}}",app="{{{{app}}}}",{{{{track_selector}}}}}}[1m]))
            condition: {{max: 0.05}}
            initialDelay: 1m
            interval: 1m
            count: 10
    - setWeight: 50
    - pause: {{duration: 5m}}
    - analysis:
        checks:
          - name: error-rate-vs-stable
            query: *q
            condition: {{compareTo: stable, maxRatio: 3}}
            initialDelay: 1m
            interval: 1m
            count: 10
"""


def spec_file(tmp_path: Path, app: str) -> Path:
    path = tmp_path / f"{app}.yaml"
    path.write_text(SPEC.format(app=app))
    return path


def provider(url: str) -> PrometheusProvider:
    return PrometheusProvider(PrometheusSettings(url=url))


def test_replay_rolls_back_at_the_first_look_after_the_regression(history: str, tmp_path: Path) -> None:
    spec = load_file(spec_file(tmp_path, "checkout"))
    result = replay(spec, provider(history), T0, T0 + timedelta(hours=1))
    # Step 2 looks at +1m..+10m (10 successes), the pause runs +10m..+15m, step 5 looks from +16m;
    # the canary breaks at +20m, so the look at +21m (the 6th of step 5) is the first to see it.
    expected = REGRESSION_AT + timedelta(minutes=1)
    assert result.decision.action == "rollback", result.decision
    assert result.decision.at == expected
    assert result.decision.check == "error-rate-vs-stable"
    assert result.decision.elapsed_seconds == 21 * 60
    step2 = [look for look in result.looks if look.step == "step 2 (analysis)"]
    assert [look.at for look in step2] == [T0 + timedelta(minutes=m) for m in range(1, 11)]
    assert all(look.phase == "successful" for look in step2)
    assert step2[-1].verdict == "successful"
    last = result.looks[-1]
    assert last.at == expected and last.phase == "failed" and last.verdict == "failed"
    assert last.value is not None and last.value == pytest.approx(0.20, rel=0.01)
    assert last.control_value == pytest.approx(0.005, rel=0.01)
    before = [look for look in result.looks if look.step == "step 5 (analysis)" and look.at < expected]
    assert len(before) == 5 and all(look.phase == "successful" for look in before)


def test_replay_of_a_quiet_window_promotes_when_the_steps_end(history: str, tmp_path: Path) -> None:
    result = replay(load_file(spec_file(tmp_path, "steady")), provider(history), T0, T0 + timedelta(hours=1))
    assert result.decision.action == "promote"
    assert result.decision.at == T0 + timedelta(minutes=25)
    assert len(result.looks) == 20


def test_window_too_short_reports_still_running(history: str, tmp_path: Path) -> None:
    result = replay(load_file(spec_file(tmp_path, "steady")), provider(history), T0, T0 + timedelta(minutes=12))
    assert result.decision.action == "running" and result.decision.at is None
    assert max(look.at for look in result.looks) <= T0 + timedelta(minutes=12)


def run_cli(*args: str, prom: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "replay", *args],
        env={**os.environ, "ORCHESTRATOR_PROMETHEUS_URL": prom}, capture_output=True, text=True, timeout=60)


def test_cli_selectors_pick_the_sides_of_history_labelled_by_version(history: str, tmp_path: Path) -> None:
    path = spec_file(tmp_path, "legacy")
    proc = run_cli(str(path), "--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00:00+00:00",
                   "--canary-selector", 'version="v2"', "--control-selector", 'version="v1"', "-o", "json",
                   prom=history)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["decision"]["action"] == "rollback"
    assert datetime.fromisoformat(out["decision"]["at"]) == REGRESSION_AT + timedelta(minutes=1)
    assert 'version="v2"' in out["looks"][0]["query"]
    # Without the selectors the history has no track label for this app: no data, the gate fails at once.
    plain = json.loads(run_cli(str(path), "--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00Z",
                               "-o", "json", prom=history).stdout)
    assert plain["decision"]["action"] == "rollback"
    assert "no data" in plain["looks"][-1]["message"]


def test_cli_markdown_and_text_name_the_decision(history: str, tmp_path: Path) -> None:
    path = str(spec_file(tmp_path, "checkout"))
    md = run_cli(path, "--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00Z", "-o", "markdown", prom=history)
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("### Replay of `checkout`: rollback")
    assert "| 2025-03-04T10:21:00+00:00 | error-rate-vs-stable | step 5 (analysis) |" in md.stdout
    text = run_cli(path, "--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00Z", prom=history)
    assert "decision: rollback at 2025-03-04T10:21:00+00:00 (+1260s)" in text.stdout


def test_cli_bad_input_exits_2_and_unreachable_prometheus_exits_3(history: str, tmp_path: Path) -> None:
    path = str(spec_file(tmp_path, "checkout"))
    bad = run_cli(path, "--from", "yesterday", "--to", "2025-03-04T11:00Z", prom=history)
    assert bad.returncode == 2 and "--from" in bad.stderr and "Traceback" not in bad.stderr
    sel = run_cli(path, "--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00Z",
                  "--canary-selector", 'version="v2"} or vector(1) #', prom=history)
    assert sel.returncode == 2 and "selector" in sel.stderr and "Traceback" not in sel.stderr
    down = run_cli(path, "--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00Z", prom="http://127.0.0.1:9")
    assert down.returncode == 3 and len(down.stderr.strip().splitlines()) == 1, down.stderr


BACKGROUND = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {name: checkout}
spec:
  target: {namespace: shop, deployment: checkout}
  change: {image: registry.local/checkout:2.0.0}
  steps:
    - setWeight: 20
    - pause: {duration: 30m}
  backgroundChecks:
    - name: error-rate
      query: >-
        sum(rate(http_requests_total{app="{{app}}",{{track_selector}},code="500"}[1m]))
        / sum(rate(http_requests_total{app="{{app}}",{{track_selector}}}[1m]))
      condition: {max: 0.05}
      initialDelay: 1m
      interval: 2m
"""


def test_background_checks_look_through_pauses_and_roll_back_there(history: str, tmp_path: Path) -> None:
    path = tmp_path / "background.yaml"
    path.write_text(BACKGROUND)
    result = replay(load_file(path), provider(history), T0, T0 + timedelta(hours=1))
    assert [look.at for look in result.looks] == [T0 + timedelta(minutes=m) for m in range(1, 22, 2)]
    assert {look.step for look in result.looks} == {"background"}
    assert result.decision.action == "rollback" and result.decision.at == T0 + timedelta(minutes=21)


JUDGE = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {name: checkout}
spec:
  target: {namespace: shop, deployment: checkout}
  change: {image: registry.local/checkout:2.0.0}
  steps:
    - setWeight: 20
    - analysis:
        duration: 40m
        checks:
          - name: errors-vs-stable
            interval: 1m
            judge:
              errors: sum(http_requests_total{app="{{app}}",{{track_selector}},code="500"})
              requests: sum(http_requests_total{app="{{app}}",{{track_selector}}})
              tolerance: 1.5x
              maxFalseRollback: 1%
"""


def test_judge_checks_replay_look_by_look_and_roll_back_after_the_regression(history: str, tmp_path: Path) -> None:
    path = tmp_path / "judge.yaml"
    path.write_text(JUDGE)
    result = replay(load_file(path), provider(history), T0, T0 + timedelta(hours=1))
    # Same error rate on both sides before the regression: the judge cannot call a regression there.
    before = [look for look in result.looks if look.at <= REGRESSION_AT]
    assert before and all(look.verdict in ("running", "successful") for look in before), before[-1]
    assert result.decision.action == "rollback", result.decision
    # The first look after the regression counts 180 errors against 63 over the same requests.
    assert result.decision.at == REGRESSION_AT + timedelta(minutes=1)
    assert result.looks[-1].phase == "failed" and result.decision.check == "errors-vs-stable"


SLO = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {name: checkout}
spec:
  target: {namespace: shop, deployment: checkout}
  change: {image: registry.local/checkout:2.0.0}
  steps:
    - setWeight: 20
    - pause: {duration: 40m}
  backgroundChecks:
    - name: availability
      initialDelay: 1m
      interval: 1m
      slo:
        objective: 99%
        bad: http_requests_total{app="{{app}}",{{track_selector}},code="500"}
        total: http_requests_total{app="{{app}}",{{track_selector}}}
        windows: [{long: 10m, short: 2m, factor: 5}]
"""


def test_slo_checks_replay_their_burn_rate_windows(history: str, tmp_path: Path) -> None:
    path = tmp_path / "slo.yaml"
    path.write_text(SLO)
    result = replay(load_file(path), provider(history), T0, T0 + timedelta(hours=1))
    # 20 % errors against a 1 % budget burn 20x; the 10-minute window passes 5x once more than about
    # 2.3 minutes of it are bad: the look at +23m. The 2-minute window alone (from +21m) does not decide.
    assert result.decision.action == "rollback" and result.decision.at == REGRESSION_AT + timedelta(minutes=3)
    by_time = {look.at: look for look in result.looks}
    assert by_time[REGRESSION_AT + timedelta(minutes=1)].phase == "successful"
    assert "error budget burning" in result.looks[-1].message
