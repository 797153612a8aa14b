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
from orchestrator.replay import Look, StepEvent, replay, to_json, to_markdown, to_text
from orchestrator.specs.loader import load_file
from tests.ecosystem.prom_history import REGRESSION_AT, T0
from tests.frontdoor.helpers import assert_one_line, invoke

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
              errors: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code="500"})
              requests: sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})
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
    # The first look after the regression counts 180 errors against 63 over the same requests; a replay reads
    # no stable history, so the judge's stated default noise (dispersion 2, pods ±30 %) needs a few more.
    assert REGRESSION_AT < result.decision.at <= REGRESSION_AT + timedelta(minutes=10)
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


# -- bounded: the number of queries is estimated before the first one ------------------------------------------

FAST = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {name: checkout}
spec:
  target: {namespace: shop, deployment: checkout}
  change: {image: IMAGE}
  steps:
    - setWeight: 20
    - pause: {duration: 30m}
  backgroundChecks:
    - name: error-rate
      query: sum(rate(http_requests_total{app="{{app}}",version="{{version}}",{{track_selector}}}[1m]))
      condition: {max: 1000000}
      interval: INTERVAL
"""
NOWHERE = {"ORCHESTRATOR_PROMETHEUS_URL": "http://127.0.0.1:1"}


def fast_spec(tmp_path: Path, interval: str, image: str = "registry.local/checkout:2.0.0") -> str:
    path = tmp_path / "fast.yaml"
    path.write_text(FAST.replace("INTERVAL", interval).replace("IMAGE", image))
    return str(path)


def test_a_replay_of_too_many_queries_is_refused_before_the_first(tmp_path: Path) -> None:
    # A 1 ms check over a year: about 3x10^10 queries. Refused at once, without asking Prometheus anything
    # (nothing listens at 127.0.0.1:1: reaching for it would be exit 3).
    outcome = invoke(["replay", fast_spec(tmp_path, "1ms"), "--from", "2025-01-01T00:00Z", "--to", "2026-01-01T00:00Z"],
                     env=NOWHERE)
    line = assert_one_line(outcome, 2, r":0: \S+: .*31,536,000,001 queries.*limit 10,000")
    assert "--max-queries" in line and "ORCHESTRATOR_REPLAY_MAX_QUERIES" in line
    assert outcome.seconds < 5


def test_the_query_limit_is_an_option_and_a_setting(tmp_path: Path) -> None:
    spec = fast_spec(tmp_path, "1m")
    window = ["--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00Z"]  # 61 looks, one query each
    outcome = invoke(["replay", spec, *window, "--max-queries", "60"], env=NOWHERE)
    assert_one_line(outcome, 2, r"up to 61 queries .*limit 60")
    outcome = invoke(["replay", spec, *window], env={**NOWHERE, "ORCHESTRATOR_REPLAY_MAX_QUERIES": "60"})
    assert_one_line(outcome, 2, r"up to 61 queries .*limit 60")
    # Within the limit the replay goes on, to Prometheus (unreachable here: exit 3).
    outcome = invoke(["replay", spec, *window, "--max-queries", "61"], env=NOWHERE)
    assert_one_line(outcome, 3, r"127\.0\.0\.1:1")
    for bad in ("abc", "0", "-5", "1e3", "99999999999999999999"):
        outcome = invoke(["replay", spec, *window, "--max-queries", bad], env=NOWHERE)
        assert_one_line(outcome, 2, r"^<command line>:0: --max-queries: ")
        outcome = invoke(["replay", spec, *window], env={**NOWHERE, "ORCHESTRATOR_REPLAY_MAX_QUERIES": bad})
        assert_one_line(outcome, 2, r"^<environment>:0: ORCHESTRATOR_REPLAY_MAX_QUERIES: ")


@pytest.mark.parametrize(("start", "end"), [
    ("9999-12-31T23:59:58Z", "9999-12-31T23:59:59Z"),
    ("2025-01-01T00:00Z", "9999-12-31T23:59:59+00:00"),
    ("0001-01-01T00:00:00+01:00", "2025-01-01T00:00Z"),
    ("0001-01-01T00:00:00", "0001-01-02T00:00:00"),
    ("2025-01-01T00:00Z", "2025-01-01T00:00Z"),
    ("2025-01-02T00:00Z", "2025-01-01T00:00Z"),
])
def test_times_that_overflow_or_an_empty_window_are_exit_2(start: str, end: str, tmp_path: Path) -> None:
    outcome = invoke(["replay", fast_spec(tmp_path, "1m"), "--from", start, "--to", end], env=NOWHERE)
    assert_one_line(outcome, 2, r"^<command line>:0: --(from|to): ")


def test_the_version_comes_from_the_same_parser_as_the_worker(history: str, tmp_path: Path) -> None:
    # A registry port is not a tag: the worker says ``latest`` for ``reg:5000/app``, and so does the replay.
    for image, version in (("reg:5000/checkout", "latest"), ("reg:5000/checkout:1.2", "1.2"),
                           ("checkout@sha256:abc", "latest")):
        spec = load_file(fast_spec(tmp_path, "10m", image))
        result = replay(spec, provider(history), T0, T0 + timedelta(minutes=10))
        assert result.looks and all(f'version="{version}"' in look.query for look in result.looks), result.looks[0]


class Collected:
    """A sink that records what it is given and the decision-free moment it got it."""

    def __init__(self) -> None:
        self.items: list[object] = []

    def event(self, event: StepEvent) -> None:
        self.items.append(event)

    def look(self, look: Look) -> None:
        self.items.append(look)


def test_looks_are_streamed_to_a_sink_not_kept(history: str, tmp_path: Path) -> None:
    sink = Collected()
    result = replay(load_file(spec_file(tmp_path, "checkout")), provider(history), T0, T0 + timedelta(hours=1),
                    sink=sink)
    assert result.looks == [] and result.events == []
    looks = [x for x in sink.items if isinstance(x, Look)]
    assert len(looks) == 16 and looks[-1].phase == "failed"
    assert [type(x).__name__ for x in sink.items[:2]] == ["StepEvent", "StepEvent"]
    assert [look.at for look in looks] == sorted(look.at for look in looks)
    # The CLI streams too, in every format, and the documents are the same as the collected replay's.
    path = str(spec_file(tmp_path, "checkout"))
    window = ["--from", "2025-03-04T10:00Z", "--to", "2025-03-04T11:00Z"]
    out = json.loads(run_cli(path, *window, "-o", "json", prom=history).stdout)
    collected = json.loads(to_json(replay(load_file(path), provider(history), T0, T0 + timedelta(hours=1))))
    assert out == collected
    text = run_cli(path, *window, prom=history).stdout
    assert text == to_text(replay(load_file(path), provider(history), T0, T0 + timedelta(hours=1)))
    md = run_cli(path, *window, "-o", "markdown", prom=history).stdout
    assert md == to_markdown(replay(load_file(path), provider(history), T0, T0 + timedelta(hours=1)))
