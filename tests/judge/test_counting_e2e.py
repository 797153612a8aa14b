"""Counting that loses nothing, on a real Prometheus with backfilled per-pod counters (issue 20, part 2).

Given series scraped as on a real cluster (stable pods without a track label, one series per pod),
when the judge looks every 10 s,
then a side whose scrape has not landed makes the look wait instead of losing the other side's
increment, the scrape interval is inferred from the samples and warned about, and an error series that
comes back after a restart is counted, not taken for a reset (which would skip exactly the looks with
an error).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from orchestrator.config import PrometheusSettings
from orchestrator.gates.counts import read_look
from orchestrator.gates.dispersion import INDEPENDENT
from orchestrator.gates.judge import JudgeState, Outcome, judge_update
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.specs.checks import Check
from tests.judge.backfill import serve_openmetrics

START = datetime(2024, 6, 1, tzinfo=UTC)
LENGTH = 20 * 60
RPS = 20
REQUESTS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})'
ERRORS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code="500"})'
CHECK = Check.model_validate({"name": "errors", "interval": "10s", "judge": {
    "errors": ERRORS, "requests": REQUESTS, "tolerance": "1.2x"}})  # fmt: skip
RESTART = 10 * 60
ERRORS_BACK = 12 * 60


def _series(app: str, pod: str, track: str | None, code: str, points: list[tuple[int, int]]) -> list[str]:
    labels = {"app": app, "pod": pod, **({"track": track} if track else {}), "code": code}
    name = "http_requests_total{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    ts0 = int(START.timestamp())
    return [f"{name} {value} {ts0 + t}" for t, value in points]


def _openmetrics() -> Iterator[str]:
    yield "# TYPE http_requests counter"
    # "offset": both sides scraped every 30 s, the canary 15 s after the stable; 20 rps each, 0.5 % errors
    # on the stable and 2x that on the canary.
    for pod, track, offset, per in (("offset-stable", None, 0, 200), ("offset-canary", "canary", 15, 100)):
        times = range(offset, LENGTH + 1, 30)
        yield from _series("offset", pod, track, "200", [(t, RPS * t - RPS * t // per) for t in times])
        yield from _series("offset", pod, track, "500", [(t, RPS * t // per) for t in times])
    # "restart": 10 s scrapes; the canary pod restarts at 10 min. Its error series is gone until 12 min,
    # when the new process's first errors make it appear again, from a low value.
    times = range(0, LENGTH + 1, 10)
    yield from _series("restart", "restart-stable", None, "200", [(t, RPS * t - RPS * t // 200) for t in times])
    yield from _series("restart", "restart-stable", None, "500", [(t, RPS * t // 200) for t in times])

    def since(t: int) -> int:
        return t if t < RESTART else t - RESTART

    yield from _series("restart", "restart-canary", "canary", "200",
                       [(t, RPS * since(t) - RPS * since(t) // 200) for t in times])  # fmt: skip
    yield from _series("restart", "restart-canary", "canary", "500",
                       [(t, RPS * since(t) // 200) for t in times if t < RESTART or t >= ERRORS_BACK])  # fmt: skip
    yield "# EOF"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProvider]:
    with serve_openmetrics(tmp_path_factory.mktemp("counting-prom"), _openmetrics()) as url:
        yield PrometheusProvider(PrometheusSettings(url=url))


def _looks(prom: PrometheusProvider, app: str, first: int, last: int) -> tuple[JudgeState, list[str]]:
    state, messages = JudgeState(), []
    for seconds in range(first, last + 1, 10):
        look = read_look(prom, CHECK, {"app": app}, state, START + timedelta(seconds=seconds), service=True)
        if look.start:  # exactly proportional counts, one pod a side: declared, not measured
            look = look.model_copy(update={"noise": INDEPENDENT})
        state, verdict = judge_update(CHECK, state, look, alpha=0.01)
        messages.append(verdict.message)
        if verdict.outcome is Outcome.FAILED:
            break
    return state, messages


def test_a_look_whose_other_side_has_not_been_scraped_waits_and_loses_nothing(prom: PrometheusProvider) -> None:
    # Looks at :05, :15, ...: the canary's scrapes land at :15 and :45, the stable's at :00 and :30, so no
    # look sees both sides move. Discarding such looks left no evidence at all: a 2x canary never failed.
    state, messages = _looks(prom, "offset", 5 * 60 + 5, 19 * 60 + 55)
    assert state.outcome is Outcome.FAILED, messages[-1]
    # Every counted canary request is a request of a look both sides advanced for, from the first reading on:
    # a whole number of the canary's 30 s scrapes, the stable's the same span 15 s apart.
    assert state.canary_requests % (RPS * 30) == 0 and state.canary_requests > 0, state.canary_requests
    assert state.control_requests == state.canary_requests
    assert any("waiting for its next scrape" in m for m in messages)
    # Samples 30 s apart, looks every 10 s: said on the first look.
    assert "samples arrive further apart than the 10 s look interval" in messages[0], messages[0]
    assert "about 30 s" in messages[0], messages[0]


def test_an_error_series_back_after_a_restart_is_counted_not_taken_for_a_reset(prom: PrometheusProvider) -> None:
    state, messages = _looks(prom, "restart", 5 * 60, 15 * 60)
    resets = [m for m in messages if m.startswith("counter reset")]
    # One reset: the look where the requests restarted. Not a second one at the first new error.
    assert len(resets) == 1, resets
    assert "counter reset in canary requests" in resets[0]
    # Every error the canary had outside the skipped restart look is counted: 5:00 -> 10:00 is 300 s,
    # and after the restart the new process's 3 min of errors (to 15:00).
    assert state.canary_events == pytest.approx(RPS * 300 // 200 + RPS * (15 * 60 - RESTART) // 200, abs=1)
