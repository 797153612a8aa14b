"""Each fault scenario as one function, run by the suite (one case each) and by the report (in loops).

A scenario gets a ``Stage`` (where the cluster, Prometheus and Temporal are, plus a fresh namespace and
task queue), injects its fault, waits for the run to end and returns an ``Outcome`` with the faults it
injected: the suite asserts ``outcome.ok``, ``benchmarks/reliability.py`` adds the columns up.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.service import RPCError

from orchestrator.api.canary import CanaryStatus, Phase
from orchestrator.api.common import ControlRequest
from tests.reliability.harness import (
    ApiFaults,
    PromServer,
    TemporalServer,
    Workers,
    connect,
    kill_at_boundary,
    last_runner_pid,
    nth,
    stopping,
    until,
    worker_env,
)
from tests.reliability.scenarios import (
    Outcome,
    all_kinds,
    check,
    create_stable,
    expect_promoted,
    expect_undone,
    start,
)
from workflows.canary import CanaryWorkflow

# What a clean run writes to the cluster (the audit log of the sandbox API server): every write once.
# The canary's scale writes are left out: replicas routing may write the same count again while it
# waits for pods, which repeats no step.
# (The canary's create is recorded without a name, beside the stable's own create by the scenario.)
CLEAN_WRITES = Counter({
    "deployments/None create": 2, "deployments/healthy update": 1, "deployments/healthy-canary delete": 1})
RESULT_TIMEOUT = 240.0


@dataclass
class Stage:
    api_client: Any
    server: Any  # the sandbox ApiServer
    kubeconfig: Path
    namespace: str
    prom_url: str
    prom_data: Path
    temporal_address: str
    client: Any
    task_queue: str
    workdir: Path
    audit: Callable[[], list[dict[str, Any]]]

    def workers(self, kubeconfig: Path | None = None, prom_url: str | None = None,
                temporal: str | None = None) -> Workers:
        return Workers(worker_env(temporal=temporal or self.temporal_address, task_queue=self.task_queue,
                                  kubeconfig=kubeconfig or self.kubeconfig, prom_url=prom_url or self.prom_url,
                                  workdir=self.workdir), self.workdir / "worker.log")


@dataclass
class Ran:
    outcome: Outcome
    faults: int
    detail: str = ""  # a figure worth reporting beside the counts (e.g. how late a revert came)


async def clean(stage: Stage) -> tuple[Ran, list[tuple[str, str]]]:
    """A run with no fault: the reference for the boundary loop (its history lists every boundary)."""
    from tests.reliability.harness import activity_events

    create_stable(stage.api_client, stage.namespace)
    workers = stage.workers()
    with stopping(workers):
        workers.start()
        handle = await start(stage.client, all_kinds(stage.namespace), stage.task_queue)
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    outcome = await expect_promoted(handle, result, stage.api_client, stage.namespace, stage.audit(), CLEAN_WRITES)
    return Ran(outcome, 0), await activity_events(handle)


async def worker_killed_at(stage: Stage, what: str, activity: str | None, n: int) -> Ran:
    """SIGKILL the worker the moment the ``n``-th ``what`` event of ``activity`` is in history; a new one resumes."""
    create_stable(stage.api_client, stage.namespace)
    workers = stage.workers()
    with stopping(workers):
        first = workers.start()
        handle = await start(stage.client, all_kinds(stage.namespace), stage.task_queue)
        await kill_at_boundary(handle, nth(what, activity, n), lambda: workers.kill(first))
        workers.start()
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    outcome = await expect_promoted(handle, result, stage.api_client, stage.namespace, stage.audit(), CLEAN_WRITES)
    return Ran(outcome, workers.kills)


async def temporal_restarted(stage: Stage) -> Ran:
    """The Temporal dev server SIGKILLed mid-analysis and started again on its database file."""
    create_stable(stage.api_client, stage.namespace)
    temporal = TemporalServer(stage.workdir / "temporal").start()
    workers = stage.workers(temporal=temporal.address)
    with stopping(workers, temporal):
        client = await connect(temporal.address)
        workers.start()
        handle = await start(client, all_kinds(stage.namespace), stage.task_queue)
        # Mid-analysis: a watch (the step's looks) in flight.
        await kill_at_boundary(handle, nth("scheduled", "watch.checks", 1), temporal.kill)
        await asyncio.sleep(3)  # workers and client see connection errors meanwhile
        temporal.start()
        client = await connect(temporal.address)
        handle = client.get_workflow_handle_for(CanaryWorkflow.run, handle.id)
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        outcome = await expect_promoted(handle, result, stage.api_client, stage.namespace, stage.audit(),
                                        CLEAN_WRITES)  # the history is read while this server still runs
    return Ran(outcome, temporal.kills)


def _prom_rollout(namespace: str, error_limit: int) -> Any:
    # One analysis long enough to lose Prometheus in its middle; no background check, so every look
    # (and every error) is the analysis's own.
    return all_kinds(namespace, background=False,
                     analysis={"checks": [check("errors", count=8, consecutiveErrorLimit=error_limit)]},
                     onInconclusive={"action": "rollback"})


async def prometheus_down(stage: Stage, *, back_after: float | None, error_limit: int) -> Ran:
    """Prometheus SIGKILLed while the analysis's watch runs; restarted after ``back_after`` s, or never."""
    create_stable(stage.api_client, stage.namespace)
    prom = PromServer(stage.workdir / "prom").build(copy_from=stage.prom_data).start()
    workers = stage.workers(prom_url=prom.url)
    with stopping(workers, prom):
        workers.start()
        handle = await start(stage.client, _prom_rollout(stage.namespace, error_limit), stage.task_queue)
        await kill_at_boundary(handle, nth("scheduled", "watch.checks", 1), prom.kill)
        if back_after is not None:
            await asyncio.sleep(back_after)
            prom.start()
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    if back_after is not None:
        outcome = await expect_promoted(handle, result, stage.api_client, stage.namespace, stage.audit(),
                                        CLEAN_WRITES)
    else:
        outcome = await expect_undone(handle, result, stage.api_client, stage.namespace, (Phase.ROLLED_BACK,))
        gate = next((g for g in result.gates if g.check == "errors"), None)
        if result.reason_kind != "inconclusive" or gate is None or gate.phase.value != "error":
            outcome.finished = False
            outcome.problems.append(f"not an ERROR verdict under the no-decision policy: {result.reason_kind}, "
                                    f"{gate.phase.value if gate else None}")
    return Ran(outcome, prom.kills)


async def api_storm(stage: Stage, codes: tuple[int, ...] = (500, 409, 429), on: float = 1.0,
                    off: float = 2.0) -> Ran:
    """Bursts of ``codes`` (every request for ``on`` seconds, then ``off`` seconds calm), the whole rollout."""
    create_stable(stage.api_client, stage.namespace)
    proxy = ApiFaults(stage.server.url).up()
    workers = stage.workers(kubeconfig=proxy.write_kubeconfig(stage.workdir / "kubeconfig-faults"))
    with stopping(workers, proxy):
        proxy.storm(codes, on=on, off=off)
        workers.start()
        handle = await start(stage.client, all_kinds(stage.namespace), stage.task_queue)
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    outcome = await expect_promoted(handle, result, stage.api_client, stage.namespace, stage.audit(), CLEAN_WRITES)
    return Ran(outcome, proxy.injected)


async def api_down_in_rollback(stage: Stage) -> Ran:
    """The API refuses connections while an aborted rollout rolls back: ``rollback-stuck``, then it lands."""
    create_stable(stage.api_client, stage.namespace)
    proxy = ApiFaults(stage.server.url).up()
    workers = stage.workers(kubeconfig=proxy.write_kubeconfig(stage.workdir / "kubeconfig-faults"))
    stuck_seen = False
    with stopping(workers, proxy):
        workers.start()
        handle = await start(stage.client, all_kinds(stage.namespace, background=False), stage.task_queue)

        async def past_first_weight() -> bool:
            st = await status_of(handle)
            return st is not None and st.step >= 1

        await until(past_first_weight, 150, "the pause step")
        proxy.down()
        await handle.execute_update(CanaryWorkflow.abort, ControlRequest(reason="reliability", by="suite"))

        async def stuck() -> bool:
            st = await status_of(handle)
            return st is not None and st.phase is Phase.ROLLBACK_STUCK and st.stuck is not None

        # An undo step's activity retries for about a minute before the engine reports it stuck.
        await until(stuck, 180, "rollback-stuck in the status")
        stuck_seen = True
        proxy.up()
        await handle.execute_update(CanaryWorkflow.retry, ControlRequest(by="suite"))  # not the slow timer
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
    outcome = await expect_undone(handle, result, stage.api_client, stage.namespace, (Phase.ABORTED,))
    if not stuck_seen or result.stuck is not None or not any("landed after" in e.message for e in result.events):
        outcome.finished = False
        outcome.problems.append("the stuck step was not reported, or not cleared once it landed")
    return Ran(outcome, 1)


async def two_workers_one_killed(stage: Stage) -> Ran:
    """Two workers on the queue; the one that holds the run is SIGKILLed in the analysis step."""
    create_stable(stage.api_client, stage.namespace)
    workers = stage.workers()
    with stopping(workers):
        pair = [workers.start(), workers.start()]
        handle = await start(stage.client, all_kinds(stage.namespace), stage.task_queue)

        async def in_analysis() -> bool:
            st = await status_of(handle)
            return st is not None and st.step == 2

        await until(in_analysis, 150, "the analysis step")
        pid = await last_runner_pid(handle)
        victim = next((p for p in pair if p.pid == pid), pair[0])  # the worker that holds the run right now
        workers.kill(victim)
        result = await asyncio.wait_for(handle.result(), RESULT_TIMEOUT)
        survivor = next(p for p in pair if p is not victim)
        alive = survivor.poll() is None
    outcome = await expect_promoted(handle, result, stage.api_client, stage.namespace, stage.audit(), CLEAN_WRITES)
    if not alive or await last_runner_pid(handle) != survivor.pid:
        outcome.finished = False
        outcome.problems.append("the survivor did not finish the run")
    return Ran(outcome, workers.kills)


async def status_of(handle: Any) -> CanaryStatus | None:
    """The status query, or None while no worker answers it in time (a busy machine, a worker just killed)."""
    try:
        status: CanaryStatus = await handle.query(CanaryWorkflow.status, rpc_timeout=timedelta(seconds=10))
    except RPCError:
        return None
    return status
