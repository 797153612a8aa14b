"""The experiment workflow against real Temporal, a real Prometheus and the sandbox API server.

Steady-state checks use queries whose answer is known: ``vector(1)`` always holds; ``vector(time())``
with a ``max`` a few seconds ahead holds before the fault and breaks during it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker
from temporalio.workflow import NondeterminismError

from orchestrator.activities.chaos import ChaosActivities
from orchestrator.api.chaos import ChaosInput, ChaosPhase, ChaosStatus, GameDayInput, GameDayResult
from orchestrator.chaos.models import EXPERIMENT_LABEL
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.client import chaos as control
from orchestrator.config import Settings
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.scoring.formula import score_run
from orchestrator.scoring.model import Outcome
from orchestrator.scoring.store import RunStore
from tests.chaos.conftest import PromRules, deploy, experiment, writes
from tests.fixtures_kube import KubeTestEnv
from workflows.chaos import ChaosExperimentWorkflow
from workflows.gameday import GameDayWorkflow

pytestmark = pytest.mark.timeout(90)

SCALE = {"type": "scale-down", "replicas": 1}


def _worker(client: Client, task_queue: str, settings: Settings, kube: KubeTestEnv, metrics: PrometheusProvider,
            policy: ChaosPolicy) -> Worker:
    acts = ChaosActivities(settings, api_client=kube.api_client, metrics=metrics, temporal=client, policy=policy)
    return Worker(client, task_queue=task_queue, workflows=[ChaosExperimentWorkflow, GameDayWorkflow],
                  activities=acts.activities(), activity_executor=concurrent.futures.ThreadPoolExecutor(8),
                  workflow_failure_exception_types=[NondeterminismError])


@pytest.fixture
async def worker(temporal_client: Client, task_queue: str, settings: Settings, kube: KubeTestEnv,
                 metrics: PrometheusProvider, policy: ChaosPolicy) -> AsyncIterator[Worker]:
    w = _worker(temporal_client, task_queue, settings, kube, metrics, policy)
    async with w:
        yield w


def _replicas(kube: KubeTestEnv) -> int:
    return int(kube.apps.read_namespaced_deployment("web", kube.namespace).spec.replicas)


def _unmarked(kube: KubeTestEnv) -> bool:
    dep = kube.apps.read_namespaced_deployment("web", kube.namespace)
    return EXPERIMENT_LABEL not in (dep.metadata.labels or {})


async def _until(predicate: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


def _breaking_check(seconds: float = 4) -> list[dict[str, Any]]:
    return [{"name": "clock", "query": "vector(time())", "condition": {"max": time.time() + seconds},
             "interval": "1s", "count": 1}]


@pytest.mark.usefixtures("worker")
async def test_completed_run_reverts_recovers_and_is_recorded(kube: KubeTestEnv, temporal_client: Client,
                                                              task_queue: str, settings: Settings) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100, duration="2s")
    handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)
    seen: list[int] = []
    while True:
        seen.append(await asyncio.to_thread(_replicas, kube))
        st = await control.status(temporal_client, handle.id)
        if st.phase in (ChaosPhase.COMPLETED, ChaosPhase.NOT_RECOVERED, ChaosPhase.FAILED, ChaosPhase.REFUSED):
            break
        await asyncio.sleep(0.2)
    result = await handle.result()
    assert result.phase is ChaosPhase.COMPLETED, result.reason
    assert 1 in seen  # the fault was really in
    assert result.recovered is True and _replicas(kube) == 4 and _unmarked(kube)
    assert result.ledger and result.ledger[0].revert == {"replicas": 4}
    with RunStore(settings.db_path) as store:
        run = store.get(result.run)
    assert run is not None and run.outcome is Outcome.COMPLETED
    assert run.service == f"{kube.namespace}/web" and run.recovery_time is not None
    assert run.checks[0].before and run.checks[0].during and run.checks[0].after


@pytest.mark.usefixtures("worker")
async def test_breach_stops_early_and_reverts(kube: KubeTestEnv, temporal_client: Client, task_queue: str,
                                              settings: Settings) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100, duration="60s",
                     checks=_breaking_check(), recover_within="2s")
    started = time.monotonic()
    result = await (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result()
    assert result.phase is ChaosPhase.BREACHED, result.reason
    assert "clock failed" in (result.reason or "")
    assert time.monotonic() - started < 40  # stopped long before the 60 s duration
    assert _replicas(kube) == 4 and _unmarked(kube)
    with RunStore(settings.db_path) as store:
        run = store.get(result.run)
    assert run is not None and run.outcome is Outcome.BREACHED and run.detection_time is not None


@pytest.mark.usefixtures("worker")
async def test_declared_budget_records_the_measured_burn(kube: KubeTestEnv, temporal_client: Client,
                                                         task_queue: str, settings: Settings) -> None:
    deploy(kube, replicas=4)
    # The remaining budget steps from 0.9 to 0.88 at ``step``: after the safety rail reads it when the run
    # starts, before the run is recorded (after the 10 s fault and the recovery). By hand: 0.9 - 0.88 = 2 %
    # of the whole budget burned, so the budget sub-score is 1 - 0.02 / 0.05 = 0.6.
    # The step is 8 s away: the rails read the budget again right before injection, after the steady-state
    # look, which on a loaded machine can be seconds after the start.
    step = time.time() + 8
    budget = {"errorBudget": {"query": f"vector(0.9 - 0.02 * (time() > bool {step:.3f}))", "floor": 0.25,
                              "sloTarget": 0.999}}
    exp = experiment(kube.namespace, {"type": "pod-kill"}, duration="10s", safety=budget)
    result = await (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result()
    assert result.phase is ChaosPhase.COMPLETED, result.reason
    # Read before the step, or the hand-computed figure below would not apply.
    assert result.budget_before is not None and result.budget_before.remaining == pytest.approx(0.9)
    with RunStore(settings.db_path) as store:
        run = store.get(result.run)
    assert run is not None and run.error_budget is not None
    assert run.error_budget.slo_target == 0.999 and run.error_budget.burned == pytest.approx(0.02)
    budget_score = next(s for s in score_run(run).subscores if s.name == "budget")
    assert budget_score.value == pytest.approx(0.6)
    assert budget_score.why == "burned 2.00 % of the 99.9 % SLO budget (0 at 5 %)"


@pytest.mark.usefixtures("worker")
async def test_detection_is_scored_and_a_budget_without_data_is_not(kube: KubeTestEnv, temporal_client: Client,
                                                                    task_queue: str, settings: Settings) -> None:
    deploy(kube, replicas=4)
    # noData: pass lets the run start without a budget series; it must then leave the budget out, not guess.
    budget = {"errorBudget": {"query": 'chaos_test:error_budget_remaining{service="{{target}}"}', "floor": 0.25,
                              "noData": "pass", "sloTarget": 0.999}}
    exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100, duration="60s", checks=_breaking_check(),
                     recover_within="2s", detect_within="30s", safety=budget)
    result = await (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result()
    assert result.phase is ChaosPhase.BREACHED, result.reason
    with RunStore(settings.db_path) as store:
        run = store.get(result.run)
    assert run is not None and run.detection_time is not None
    # The clock check breaks about 4 s after the start, well inside the 30 s objective: full marks.
    assert run.detection_time < timedelta(seconds=30) and run.detection_objective == timedelta(seconds=30)
    subs = {s.name: s for s in score_run(run).subscores}
    assert subs["detection"].value == 1.0 and "(objective 30s)" in subs["detection"].why
    assert run.error_budget is None and subs["budget"].value is None
    assert ("error budget burn not measured: no data before injection (the error budget query returned no data: "
            'chaos_test:error_budget_remaining{service="exp"})') in run.message


@pytest.mark.usefixtures("worker")
async def test_abort_reverts(kube: KubeTestEnv, temporal_client: Client, task_queue: str) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100, duration="60s")
    handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)
    await _until(lambda: _replicas(kube) == 1)
    answer = await control.abort(temporal_client, handle.id, reason="test", by="pytest")
    assert answer.accepted
    result = await handle.result()
    assert result.phase is ChaosPhase.ABORTED and "aborted by pytest: test" in (result.reason or "")
    assert _replicas(kube) == 4 and _unmarked(kube)


@pytest.mark.usefixtures("worker")
async def test_cancellation_reverts(kube: KubeTestEnv, temporal_client: Client, task_queue: str) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100, duration="60s")
    handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)
    await _until(lambda: _replicas(kube) == 1)
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert _replicas(kube) == 4 and _unmarked(kube)


@pytest.mark.usefixtures("worker")
async def test_unsteady_system_is_refused_without_a_write(kube: KubeTestEnv, temporal_client: Client,
                                                          task_queue: str) -> None:
    deploy(kube, replicas=4)
    kube._audit_start = kube.server.audit_log.last_seq
    bad = [{"name": "never", "query": "vector(0)", "condition": {"min": 1}, "interval": "1s", "count": 1}]
    exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100, checks=bad)
    result = await (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result()
    assert result.phase is ChaosPhase.REFUSED and "does not hold before injection" in (result.reason or "")
    assert writes(kube) == []


@pytest.mark.usefixtures("worker")
async def test_safety_refusal_ends_the_run_as_refused(kube: KubeTestEnv, temporal_client: Client,
                                                      task_queue: str) -> None:
    deploy(kube, replicas=4, allow=False)
    exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100)
    result = await (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result()
    assert result.phase is ChaosPhase.REFUSED and "has not opted in" in (result.reason or "")


@pytest.mark.usefixtures("worker")
async def test_repeated_pod_kill(kube: KubeTestEnv, temporal_client: Client, task_queue: str) -> None:
    deploy(kube, replicas=4)
    # Rounds every second for 6 s: a round whose killed pod is not back yet is skipped, so leave room for two.
    exp = experiment(kube.namespace, {"type": "pod-kill", "interval": "1s"}, duration="6s")
    result = await (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result()
    assert result.phase is ChaosPhase.COMPLETED, result.reason
    assert result.rounds >= 2 and len(set(result.touched)) >= 2
    deletes = [w for w in writes(kube) if w[0] == "delete" and w[1] == "pods"]
    assert len(deletes) == result.rounds
    assert _unmarked(kube)


@pytest.mark.usefixtures("worker")
async def test_gameday_stops_at_the_first_unrecovered(kube: KubeTestEnv, temporal_client: Client,
                                                       task_queue: str) -> None:
    deploy(kube, replicas=4)
    ok = experiment(kube.namespace, {"type": "pod-kill"}, name="first", duration="1s")
    # The clock check holds until 20 s from now and breaks after: wide enough for the first experiment and
    # the wait on a loaded machine, and the 60 s fault is still in when it breaks.
    broken = experiment(kube.namespace, SCALE, name="second", mode="all", max_percent=100, duration="60s",
                        checks=_breaking_check(20), recover_within="1s")
    never = experiment(kube.namespace, {"type": "pod-kill"}, name="third", duration="1s")
    inp = GameDayInput(name="gd", experiments=[ChaosInput(experiment=e) for e in (ok, broken, never)])
    waiting = f"waiting for {kube.namespace}/web to be back at 4 ready pods (3 ready now"
    # The killed pod's replacement is held back (no controller) until the GameDay says it waits for it: the
    # second experiment must start on a recovered Deployment, not meet a floor its predecessor lowered.
    with kube.server.controller_paused():
        handle = await temporal_client.start_workflow(
            "GameDay", inp, id=f"gameday-{kube.namespace}", task_queue=task_queue, result_type=GameDayResult)
        await _until_event(temporal_client, handle.id, waiting)
    result = await handle.result()
    assert [r.phase for r in result.results] == [ChaosPhase.COMPLETED, ChaosPhase.BREACHED], result.results
    assert result.stopped_at == "second" and result.skipped == ["third"] and not result.passed
    messages = [e.message for e in result.events]
    assert messages.index(next(m for m in messages if m.startswith(waiting))) < messages.index("running second")
    assert _replicas(kube) == 4


@pytest.mark.usefixtures("worker")
async def test_gameday_skips_the_next_experiment_when_the_last_does_not_get_its_pods_back(
        kube: KubeTestEnv, temporal_client: Client, task_queue: str) -> None:
    deploy(kube, replicas=4)
    ok = experiment(kube.namespace, {"type": "pod-kill"}, name="first", duration="1s")
    second = experiment(kube.namespace, SCALE, name="second", mode="all", max_percent=100, duration="1s")
    third = experiment(kube.namespace, {"type": "pod-kill"}, name="third", duration="1s")
    inp = GameDayInput(name="gd", experiments=[ChaosInput(experiment=e) for e in (ok, second, third)],
                       recovery_wait_seconds=1)
    with kube.server.controller_paused():  # the killed pod is never replaced while the GameDay runs
        result = await temporal_client.execute_workflow(
            "GameDay", inp, id=f"gameday-{kube.namespace}", task_queue=task_queue, result_type=GameDayResult)
    assert [r.phase for r in result.results] == [ChaosPhase.COMPLETED]
    assert result.stopped_at == "first" and result.skipped == ["second", "third"] and not result.passed
    assert result.skip_reasons == {
        "second": f"{kube.namespace}/web was not back at 4 ready pods within 1s (3 ready)",
        "third": "after second was skipped"}
    assert any(e.message.startswith(f"waiting for {kube.namespace}/web to be back at 4 ready pods")
               for e in result.events)
    assert _replicas(kube) == 4  # the second experiment (a scale-down) never ran


async def _until_event(client: Client, wid: str, prefix: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        st = await client.get_workflow_handle(wid).query("status", result_type=GameDayResult)
        if st is not None and any(e.message.startswith(prefix) for e in st.events):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no event {prefix!r}: {st.events if st else None}")
        await asyncio.sleep(0.2)


@pytest.mark.timeout(150)
async def test_killed_worker_still_reverts(kube: KubeTestEnv, temporal_client: Client, task_queue: str,
                                           settings: Settings, metrics: PrometheusProvider, policy: ChaosPolicy,
                                           prom_rules: PromRules, temporal_address: str) -> None:
    deploy(kube, replicas=4)
    env = {**os.environ, "ORCHESTRATOR_CHAOS_NAMESPACES": kube.namespace}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.chaos.worker_proc", temporal_address, task_queue, str(kube.kubeconfig),
         prom_rules.url, settings.db_path], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        exp = experiment(kube.namespace, SCALE, mode="all", max_percent=100, duration="6s")
        handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)
        await _until(lambda: _replicas(kube) == 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _replicas(kube) == 1  # the fault outlived its worker...
    async with _worker(temporal_client, task_queue, settings, kube, metrics, policy):
        result: ChaosStatus = await asyncio.wait_for(handle.result(), 80)
    # ...until a new worker resumed the workflow and reverted it.
    assert result.phase is ChaosPhase.COMPLETED, result.reason
    assert _replicas(kube) == 4 and _unmarked(kube)
