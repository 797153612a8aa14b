"""A cancellation during a stuck revert still reverts (issue 17, defect 3, the chaos half).

The experiment is aborted, its revert fails (stuck, re-attempted on a slow timer), and then the run is
cancelled, as an operator or a GameDay's REQUEST_CANCEL does. The run must not end cancelled with the
fault still in: the revert is re-attempted, and the run ends cancelled only once it has landed.

Stand-in activities under the real names (as in tests/engine): what is checked is the workflow's rule
(when it reverts, when it may end), which depends only on *that* a revert fails or lands; the real
revert is tested against the sandbox API server in test_faults.py and test_injection.py.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Worker

from orchestrator.api.chaos import ChaosInput, ChaosPhase, PlanRequest, RunRecordRequest
from orchestrator.api.requests import EvaluateRequest, NotifyRequest, RollbackStuckRequest
from orchestrator.chaos.models import LedgerEntry, ObjectRef, Plan, TargetSet
from orchestrator.client import chaos as control
from orchestrator.gates.model import Measurement, Phase
from orchestrator.specs.chaos import ChaosExperiment
from workflows.chaos import ChaosExperimentWorkflow

pytestmark = pytest.mark.timeout(120)


@dataclass
class Cluster:
    """The one object the stand-ins fault, and every call they received."""

    faulted: bool = False
    revert_broken: bool = True
    calls: list[str] = field(default_factory=list)
    # Set: the injection returns only once released, and finishes even when cancelled meanwhile.
    hold_inject: asyncio.Event | None = None

    def activities(self) -> list[Any]:
        cluster = self

        @activity.defn(name="chaos.plan")
        async def plan(req: PlanRequest) -> Plan:
            cluster.calls.append("plan")
            targets = TargetSet(namespace="demo", selector={"app": "shop"}, candidates=[], chosen=[],
                                deployments=[], seed=0)
            entry = LedgerEntry(run=req.run, fault="scale-down", expires_at=datetime(2030, 1, 1, tzinfo=UTC),
                                object=ObjectRef(api_version="apps/v1", kind="Deployment", namespace="demo",
                                                 name="shop"))
            return Plan(run=req.run, fault="scale-down", targets=targets, affected_pods=2, total_pods=4,
                        entries=[entry])

        @activity.defn(name="chaos.record")
        async def record(e: LedgerEntry) -> LedgerEntry:
            cluster.calls.append("record")
            return e

        @activity.defn(name="chaos.inject")
        async def inject(e: LedgerEntry) -> str:
            cluster.calls.append("inject")
            cluster.faulted = True
            while cluster.hold_inject is not None and not cluster.hold_inject.is_set():
                activity.heartbeat()
                try:
                    await asyncio.wait_for(cluster.hold_inject.wait(), 0.5)
                except (TimeoutError, asyncio.CancelledError):
                    pass  # its write is done: it answers with its result, cancelled or not
            return "scaled shop to 1"

        @activity.defn(name="chaos.revert")
        async def revert(e: LedgerEntry) -> str:
            if cluster.revert_broken:
                cluster.calls.append("revert failed")
                raise ApplicationError("TypeError: cannot revert today", type="ProgrammingError",
                                       non_retryable=True)
            cluster.calls.append("revert")
            cluster.faulted = False
            return "restored shop"

        @activity.defn(name="chaos.evaluate_check")
        async def evaluate(req: EvaluateRequest) -> Measurement:
            return Measurement(check=req.check.name, phase=Phase.SUCCESSFUL, value=1.0, query="q", message="ok",
                               at=datetime.now(UTC))

        @activity.defn(name="chaos.save_run")
        async def save(req: RunRecordRequest) -> str:
            cluster.calls.append("save")
            return "saved"

        @activity.defn(name="notify.outcome")
        async def notify(req: NotifyRequest) -> None:
            pass

        @activity.defn(name="notify.rollback_stuck")
        async def stuck(req: RollbackStuckRequest) -> None:
            pass

        return [plan, record, inject, revert, evaluate, save, notify, stuck]


def _experiment(name: str) -> ChaosExperiment:
    return ChaosExperiment.model_validate({
        "kind": "ChaosExperiment", "metadata": {"name": name},
        "spec": {"target": {"namespace": "demo", "selector": {"app": "shop"}, "mode": "all"},
                 "fault": {"type": "scale-down", "replicas": 1}, "duration": "60s",
                 "steadyState": {"recoverWithin": "5s", "checks": [
                     {"name": "up", "query": "vector(1)", "condition": {"min": 1}, "interval": "1s"}]}}})


async def _until(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_a_cancel_during_a_stuck_revert_ends_the_run_only_after_the_revert_landed(
        temporal_client: Client) -> None:
    cluster = Cluster()
    queue = f"chaos-cancel-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[ChaosExperimentWorkflow],
                      activities=cluster.activities()):
        handle = await control.start(temporal_client, ChaosInput(experiment=_experiment(queue)), queue)

        async def faulted() -> bool:
            return cluster.faulted

        await _until(faulted)
        await control.abort(temporal_client, handle.id, reason="enough", by="pytest")

        async def stuck() -> bool:
            return (await control.status(temporal_client, handle.id)).phase is ChaosPhase.REVERT_STUCK

        await _until(stuck)
        first = (await control.status(temporal_client, handle.id)).stuck
        assert first is not None
        await handle.cancel()

        async def reattempted_or_closed() -> bool:
            if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                return True
            # An attempt after the cancellation failed too, and is reported stuck again (a new next attempt).
            again = (await control.status(temporal_client, handle.id)).stuck
            return again is not None and again.next_attempt_at != first.next_attempt_at

        # The revert's slow timer may be 30 s away; the cancellation must not end the run before it.
        await _until(reattempted_or_closed, timeout=90)
        assert (await handle.describe()).status is WorkflowExecutionStatus.RUNNING, (
            f"the run ended with the fault still in: {cluster.calls}")
        assert cluster.faulted
        cluster.revert_broken = False  # fixed; the operator re-attempts now
        await control.control(temporal_client, handle.id, "retry", by="pytest")
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 60)
    assert isinstance(failure.value.cause, CancelledError)
    assert not cluster.faulted
    assert cluster.calls.index("revert") < cluster.calls.index("save"), cluster.calls


async def test_a_cancel_while_the_injection_finishes_anyway_still_cancels_and_reverts(
        temporal_client: Client) -> None:
    # With WAIT_CANCELLATION_COMPLETED the SDK hands back the result of an injection that completed after the
    # cancellation was requested; the run must not take that as "carry on" and keep the fault in.
    cluster = Cluster(revert_broken=False, hold_inject=asyncio.Event())
    queue = f"chaos-cancel-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[ChaosExperimentWorkflow],
                      activities=cluster.activities()):
        handle = await control.start(temporal_client, ChaosInput(experiment=_experiment(queue)), queue)

        async def injecting() -> bool:
            return "inject" in cluster.calls

        await _until(injecting)
        await handle.cancel()

        async def cancel_requested() -> bool:
            events = [e.event_type async for e in handle.fetch_history_events()]
            return EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED in events

        assert cluster.hold_inject is not None
        try:
            await _until(cancel_requested)
        finally:
            cluster.hold_inject.set()  # never leave the worker waiting on a held injection

        async def closed_or_carried_on() -> bool:
            if (await handle.describe()).status is not WorkflowExecutionStatus.RUNNING:
                return True
            return (await control.status(temporal_client, handle.id)).phase is ChaosPhase.RUNNING

        await _until(closed_or_carried_on)
        carried_on = (await handle.describe()).status is WorkflowExecutionStatus.RUNNING
        if carried_on:
            await handle.terminate("the test is over")
        assert not carried_on, f"the run carried on with the fault in after its cancellation: {cluster.calls}"
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert isinstance(failure.value.cause, CancelledError)
    assert not cluster.faulted and "revert" in cluster.calls
