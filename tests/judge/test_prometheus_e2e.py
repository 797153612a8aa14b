"""The judge end to end on a real Prometheus: backfilled counters and histograms, read_look + judge_update/finish.

Given a Prometheus holding one scenario per app (stable pods unlabelled, canary pods ``track="canary"``,
as on a real cluster; error series that appear only at the first error, as real exporters do),
when the judge looks every 10 s from the data's start,
then a regressed canary is rolled back, an identical one is promoted early, a starved one ends
"not enough traffic", and a counter reset mid-canary produces no verdict by itself.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from orchestrator.config import PrometheusSettings
from orchestrator.gates.counts import read_look
from orchestrator.gates.dispersion import INDEPENDENT, Noise
from orchestrator.gates.judge import JudgeState, JudgeVerdict, Outcome, judge_finish, judge_update
from orchestrator.gates.model import Phase
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.gates.slo import evaluate_slo
from orchestrator.specs.checks import Check
from tests.judge.backfill import serve_openmetrics

START = datetime(2024, 5, 1, tzinfo=UTC)
LENGTH = timedelta(minutes=40)
STEP = 10
LE = (0.05, 0.1, 0.25, 0.5, 1.0, math.inf)
FAST = (0.2, 0.6, 0.95, 0.99, 1.0, 1.0)
SLOW = (0.05, 0.2, 0.6, 0.9, 0.97, 1.0)

REQUESTS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}}})'
ERRORS = 'sum by (pod) (http_requests_total{app="{{app}}",{{track_selector}},code="500"})'
LATENCY = 'sum by (le, pod) (http_request_duration_seconds_bucket{app="{{app}}",{{track_selector}}})'


@dataclass(frozen=True)
class Pod:
    app: str
    pod: str
    track: str | None  # None: a stable pod, which carries no track label on a real cluster
    rps: float
    errors: float
    latency: tuple[float, ...] = FAST
    reset_at: timedelta | None = None  # the pod restarts: its counters start again from 0


PODS = [
    *(Pod(app, f"{app}-stable", None, 20, 0.005) for app in ("regressed", "identical", "starved", "reset", "slow")),
    Pod("regressed", "regressed-canary", "canary", 20, 0.03),
    Pod("identical", "identical-canary", "canary", 20, 0.005),
    Pod("starved", "starved-canary", "canary", 0.05, 0.005),
    Pod("reset", "reset-canary", "canary", 20, 0.005, reset_at=timedelta(minutes=3)),
    Pod("slow", "slow-canary", "canary", 20, 0.005, latency=SLOW),
]


def _counts(pod: Pod, seconds: float) -> tuple[int, int]:
    """Cumulative (requests, errors) at ``seconds`` into the data; deterministic and spread evenly."""
    if pod.reset_at is not None and seconds >= pod.reset_at.total_seconds():
        seconds -= pod.reset_at.total_seconds()
    requests = math.floor(pod.rps * seconds)
    return requests, math.floor(requests * pod.errors)


def _openmetrics() -> Iterator[str]:
    times = range(0, int(LENGTH.total_seconds()) + 1, STEP)
    ts0 = int(START.timestamp())

    def labels(pod: Pod, **more: str) -> str:
        pairs = {"app": pod.app, "pod": pod.pod, **({"track": pod.track} if pod.track else {}), **more}
        return ",".join(f'{k}="{v}"' for k, v in pairs.items())

    yield "# TYPE http_requests counter"
    for pod in PODS:
        for code in ("200", "500"):
            name = f"http_requests_total{{{labels(pod, code=code)}}}"
            for t in times:
                requests, errors = _counts(pod, t)
                value = requests - errors if code == "200" else errors
                if code == "500" and errors == 0 and pod.reset_at is None:
                    continue  # the error series appears only with the first error, as real exporters do
                yield f"{name} {value} {ts0 + t}"
    yield "# TYPE http_request_duration_seconds histogram"
    for pod in PODS:
        for le, share in zip(LE, pod.latency, strict=True):
            bound = "+Inf" if math.isinf(le) else f"{le:g}"
            name = f"http_request_duration_seconds_bucket{{{labels(pod, le=bound)}}}"
            for t in times:
                yield f"{name} {math.floor(_counts(pod, t)[0] * share)} {ts0 + t}"
        for t in times:
            yield f"http_request_duration_seconds_count{{{labels(pod)}}} {_counts(pod, t)[0]} {ts0 + t}"
            yield f"http_request_duration_seconds_sum{{{labels(pod)}}} {_counts(pod, t)[0] * 0.1:.3f} {ts0 + t}"
    yield "# TYPE container_memory_working_set_bytes gauge"
    for pod in PODS:
        # The regressed canary uses 40 % more memory; values wobble by a few percent, out of phase per side.
        base = 100e6 * (1.4 if pod.app == "regressed" and pod.track else 1.0)
        phase = 2 if pod.track else 0
        for t in times:
            wobble = 1 + 0.03 * (((t // STEP + phase) % 5) - 2) / 2
            yield f"container_memory_working_set_bytes{{{labels(pod)}}} {base * wobble:.0f} {ts0 + t}"
    yield "# EOF"


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusProvider]:
    with serve_openmetrics(tmp_path_factory.mktemp("judge-prom"), _openmetrics()) as url:
        yield PrometheusProvider(PrometheusSettings(url=url))


MEMORY = 'sum by (pod) (container_memory_working_set_bytes{app="{{app}}",{{track_selector}}})'


def _judge(kind: str = "counts", **extra: object) -> Check:
    queries: dict[str, object] = {"errors": ERRORS, "requests": REQUESTS}
    if kind == "latency":
        queries = {"latency": LATENCY}
    elif kind == "gauge":
        queries = {"gauge": MEMORY}
    return Check.model_validate({"name": f"judge-{kind}", "interval": "10s", "judge": {**queries, **extra}})


def _run(prom: PrometheusProvider, check: Check, app: str, *, minutes: float = 30,
         first: timedelta = timedelta(seconds=30), noise: Noise | None = INDEPENDENT,
         ) -> tuple[JudgeVerdict, list[JudgeVerdict], JudgeState]:  # fmt: skip
    # The data are exactly proportional, one pod a side: no dispersion and no pod spread, declared as such
    # (``noise=None`` leaves the judge to its stated default, as without history).
    state = JudgeState()
    seen: list[JudgeVerdict] = []
    at = START + first
    end = at + timedelta(minutes=minutes)
    while at <= end:
        look = read_look(prom, check, {"app": app}, state, at)
        if look.start:
            look = look.model_copy(update={"noise": noise})
        state, verdict = judge_update(check, state, look, alpha=0.01)
        seen.append(verdict)
        if verdict.outcome is not Outcome.RUNNING:
            return verdict, seen, state
        at += timedelta(seconds=10)
    return judge_finish(check, state, alpha=0.01), seen, state


def test_a_regressed_canary_is_rolled_back_with_the_judges_verdict(prom: PrometheusProvider) -> None:
    verdict, seen, state = _run(prom, _judge(tolerance="1.2x"), "regressed")
    assert verdict.outcome is Outcome.FAILED, verdict.message
    assert len(seen) < 60  # well within ten minutes at 20 rps and 6x the errors
    assert "-> rollback; false-rollback bound 1 %" in verdict.message
    assert verdict.canary_value == pytest.approx(0.03, abs=0.005)
    assert verdict.control_value == pytest.approx(0.005, abs=0.003)
    # Counts are exact: the canary's error series appeared only with its first error and still counted.
    looked = (state.last_at - state.started_at).total_seconds()  # type: ignore[operator]
    assert state.canary_requests == pytest.approx(20 * looked, abs=1)
    assert state.canary_events == pytest.approx(math.floor(20 * (30 + looked) * 0.03) - math.floor(20 * 30 * 0.03),
                                                abs=1)  # fmt: skip


def test_an_identical_canary_is_promoted_early(prom: PrometheusProvider) -> None:
    verdict, seen, _ = _run(prom, _judge(tolerance="2x"), "identical")
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.message
    assert verdict.phase is Phase.SUCCESSFUL
    assert len(seen) < 30 * 6  # before the step's 30 minutes are over
    assert "-> promote" in verdict.message


def test_a_starved_canary_ends_not_enough_traffic(prom: PrometheusProvider) -> None:
    verdict, _, state = _run(prom, _judge(), "starved", minutes=10)
    assert verdict.outcome is Outcome.NOT_ENOUGH_TRAFFIC, verdict.message
    assert verdict.status(state.looks).phase.value == "inconclusive"
    assert verdict.needed_requests is not None and verdict.needed_seconds is not None
    assert "roughly" in verdict.message and "more requests needed" in verdict.message


def test_a_counter_reset_mid_canary_does_not_produce_a_verdict_by_itself(prom: PrometheusProvider) -> None:
    # The canary pod restarts 3 minutes in; look just before and just after it.
    check = _judge(tolerance="1.2x")
    state = JudgeState()
    verdicts = []
    for seconds in (150, 170, 180, 190, 200):
        look = read_look(prom, check, {"app": "reset"}, state, START + timedelta(seconds=seconds))
        state, verdict = judge_update(check, state, look, alpha=0.01)
        verdicts.append((look, verdict))
    reset_look, reset_verdict = verdicts[2]
    assert "counter reset in canary" in reset_look.skipped
    assert reset_verdict.outcome is Outcome.RUNNING and reset_verdict.reason == "counter-reset"
    assert all(v.outcome is Outcome.RUNNING for _, v in verdicts)
    # 20 s before the reset counted, the reset look's 10 s not, then counting resumes from the new readings.
    assert state.canary_requests == pytest.approx(20 * 20 + 20 * 10 + 20 * 10, abs=2)
    assert state.control_requests == pytest.approx(state.canary_requests, abs=2)


def test_a_slower_canary_is_rolled_back_on_the_latency_tail(prom: PrometheusProvider) -> None:
    verdict, _, state = _run(prom, _judge("latency", tolerance="+10%"), "slow")
    assert verdict.outcome is Outcome.FAILED, verdict.message
    assert state.tail_le == 0.5  # the control's p99 bucket bound, fixed before the first counted look
    assert "share slower than 0.5 s (the stable's p99)" in verdict.message


def test_without_history_one_canary_pod_cannot_be_promoted_and_the_verdict_says_why(prom: PrometheusProvider) -> None:
    # No stable history: the stated default (pods ±30 %) with one canary pod against one stable pod.
    verdict, _, state = _run(prom, _judge(tolerance="1.2x"), "identical", minutes=10, noise=None)
    assert verdict.outcome is Outcome.NOT_ENOUGH_TRAFFIC, verdict.message
    assert (state.canary_pods, state.control_pods) == (1, 1)
    assert "no history of the stable: the conservative default is used" in verdict.message, verdict.message
    assert "with 1 canary pod vs 1 stable pods the canary is judged as a version, not as a pod" in verdict.message
    assert "so an unchanged version can seldom be promoted" in verdict.message, verdict.message
    # A 6x regression is still beyond what the pods' spread can explain.
    failed, _, _ = _run(prom, _judge(tolerance="1.2x"), "regressed", noise=None)
    assert failed.outcome is Outcome.FAILED, failed.message


def test_an_identical_latency_is_promoted(prom: PrometheusProvider) -> None:
    verdict, _, _ = _run(prom, _judge("latency", tolerance="+50%"), "identical")
    assert verdict.outcome is Outcome.SUCCESSFUL, verdict.message


def test_slo_burn_rate_fails_a_burning_canary_and_passes_a_healthy_one(prom: PrometheusProvider) -> None:
    spec = {"name": "budget", "track": "canary", "slo": {
        "objective": "99%", "bad": 'http_requests_total{app="{{app}}",{{track_selector}},code="500"}',
        "total": 'http_requests_total{app="{{app}}",{{track_selector}}}',
        "windows": [{"long": "10m", "short": "1m", "factor": 2}]}}  # fmt: skip
    check = Check.model_validate(spec)
    at = START + timedelta(minutes=30)
    burning = evaluate_slo(check, prom, {"app": "regressed"}, at)
    assert burning.phase is Phase.FAILED, burning.message
    assert burning.value == pytest.approx(3.0, rel=0.05)  # 3 % bad over a 1 % budget
    healthy = evaluate_slo(check, prom, {"app": "identical"}, at)
    assert healthy.phase is Phase.SUCCESSFUL, healthy.message
    assert "sum(increase(http_requests_total{" in healthy.query


def test_canary_plan_sizes_each_step_from_the_current_traffic(prom: PrometheusProvider, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orchestrator.cli.main import cli

    spec = tmp_path / "plan.yaml"
    spec.write_text(f"""
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata: {{name: identical}}
spec:
  target: {{namespace: prod, deployment: identical}}
  change: {{image: app:v2}}
  steps:
    - setWeight: 5
    - analysis:
        duration: 5m
        checks:
          - name: errors
            interval: 10s
            judge: {{errors: '{ERRORS}', requests: '{REQUESTS}', tolerance: 2x}}
    - setWeight: 50
    - analysis:
        duration: 30m
        checks:
          - name: errors-50
            interval: 10s
            judge: {{errors: '{ERRORS}', requests: '{REQUESTS}', tolerance: 2x}}
          - name: p99-50
            interval: 10s
            judge: {{latency: '{LATENCY}', quantile: 0.99, tolerance: +50%}}
""")
    at = (START + timedelta(minutes=30)).isoformat()
    result = CliRunner().invoke(cli, ["--prometheus-url", prom.url, "canary", "plan", str(spec), "--at", at])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # The stable serves 20 rps with 0.5 % errors: at 5 % a 2x regression takes far longer than 5 minutes.
    assert "step 2: errors at 5 % weight (canary 1 rps vs stable 19 rps, 0.5 % errors)" in result.output
    assert any(line.startswith("step 2:") and "WARNING: too short" in line for line in lines)
    errors_50 = next(line for line in lines if line.startswith("step 4: errors-50"))
    assert "a version no different from the stable is promoted after about" in errors_50, errors_50
    assert "a 4x error regression is caught after about" in errors_50, errors_50
    # The latency judge counts requests slower than the stable's p99 bucket (1 % of them, above 0.5 s): a p99
    # 50 % slower puts about 2.6 times as many there (the histogram interpolated).
    tail = next(line for line in lines if line.startswith("step 4: p99-50"))
    assert "1 % slower than 0.5 s" in tail and "(the tolerance, p99 +50 %, is 2.6x the slow share)" in tail, tail
    assert "caught after about" in tail
    assert "alpha 1 % per rollout over 3 judge check(s)" in result.output


async def test_the_judge_activities_in_a_real_worker_carry_the_state_between_looks(
    prom: PrometheusProvider, temporal_client: Client, task_queue: str
) -> None:
    import concurrent.futures

    from temporalio.worker import Worker

    from orchestrator.activities.judge import JudgeActivities
    from orchestrator.config import Settings
    from tests.judge.judge_workflow import JudgeRun, JudgeRunWorkflow

    activities = JudgeActivities(Settings(), metrics=prom).activities()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(temporal_client, task_queue=task_queue, workflows=[JudgeRunWorkflow],
                          activities=activities, activity_executor=executor):  # fmt: skip
            results = {}
            for app, looks in (("regressed", 120), ("starved", 20)):
                run = JudgeRun(check=_judge(tolerance="1.2x"), variables={"app": app},
                               start=START + timedelta(seconds=30), looks=looks, alpha=0.01)  # fmt: skip
                results[app] = await temporal_client.execute_workflow(
                    JudgeRunWorkflow.run, run, id=f"judge-{app}-{task_queue}", task_queue=task_queue,
                )  # fmt: skip
    assert results["regressed"].verdict.outcome is Outcome.FAILED
    assert results["regressed"].messages[0].startswith("first look: starting point set")
    assert results["starved"].verdict.outcome is Outcome.NOT_ENOUGH_TRAFFIC
    assert len(results["starved"].messages) == 20


def test_memory_per_pod_fails_a_hungrier_canary_and_promotes_an_equal_one(prom: PrometheusProvider) -> None:
    hungry, _, _ = _run(prom, _judge("gauge", tolerance="+10%"), "regressed")
    assert hungry.outcome is Outcome.FAILED, hungry.message
    assert "difference +40" in hungry.message
    equal, _, _ = _run(prom, _judge("gauge", tolerance="+10%"), "identical")
    assert equal.outcome is Outcome.SUCCESSFUL, equal.message


def test_judge_messages_survive_temporals_data_converter() -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter

    from orchestrator.gates.judge import JudgeLook, JudgeLookRequest, JudgeLookResult, Side

    check = _judge(tolerance="+20%", maxFalseRollback="0.5%")
    state, _ = judge_update(check, JudgeState(), JudgeLook(at=START, start=True, marks={"canary/x": 3.0}), alpha=0.01)
    look = JudgeLook(at=START + timedelta(seconds=10), canary=Side(requests=100, errors=3),
                     control=Side(requests=100, errors=1))  # fmt: skip
    state, verdict = judge_update(check, state, look, alpha=0.01)
    converter = pydantic_data_converter.payload_converter
    for value in (JudgeLookRequest(check=check, variables={"app": "a"}, state=state, alpha=0.005),
                  JudgeLookResult(state=state, verdict=verdict, measurement=verdict.measurement(look))):  # fmt: skip
        payloads = converter.to_payloads([value])
        assert converter.from_payloads(payloads, [type(value)])[0] == value
        assert len(payloads[0].data) < 8000


def test_a_flag_ramps_judge_takes_no_pod_spread_between_variants_on_the_same_pods(prom: PrometheusProvider) -> None:
    # Through the worker's activity (a plain call), as a flag ramp calls it: the sides are variable sets.
    from orchestrator.activities.judge import JudgeActivities
    from orchestrator.config import Settings
    from orchestrator.gates.judge import JudgeLookRequest

    look = JudgeActivities(Settings(), metrics=prom).look
    req = JudgeLookRequest(check=_judge(tolerance="1.2x"), variables={"app": "identical"},
                           control_variables={"app": "identical"}, alpha=0.01, at=START + timedelta(minutes=5))
    first = look(req)
    assert first.state.noise is not None and first.state.noise.pod_sd == 0, first.state.noise
    assert "both variants run on the same pods, so pods add no spread between them" in first.verdict.message
    assert "judged as a version, not as a pod" not in first.verdict.message
