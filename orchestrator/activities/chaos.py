"""Activities of chaos experiments: plan (with the safety rails), record, inject, revert, measure, save.

``ChaosActivities`` is built with its clients like ``CanaryActivities``; each is created on first use
so a worker starts while a backend is briefly down. The Temporal client the rails need (is a canary
or another experiment running?) is the worker's own, from ``activity.client()``, unless one is given.

Idempotency: ``plan`` only reads; ``record`` keeps the first recording of a run; ``inject`` converges
to the faulted state; ``revert`` acts only on objects still marked by the run. A retry after a worker
crash therefore changes nothing more than the first attempt did.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import activity
from temporalio.exceptions import CancelledError

from orchestrator.activities.clients import ActivityClients
from orchestrator.activities.errors import application_error, temporal_errors
from orchestrator.api.chaos import PlanRequest, ReadyWait, RunRecordRequest
from orchestrator.api.requests import EvaluateRequest
from orchestrator.chaos.models import BudgetReading, JanitorResult, LedgerEntry, Plan
from orchestrator.chaos.safety import ChaosPolicy
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.gates.model import Measurement
from orchestrator.rails.active import TemporalActiveWork, canary_workflow_id  # one implementation, the rails'
from orchestrator.specs.chaos import ChaosExperiment

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from temporalio.client import Client

    from orchestrator.chaos.objects import Objects
    from orchestrator.gates.prometheus import MetricProvider
    from orchestrator.specs.policy import RailsPolicy

__all__ = ["ChaosActivities", "TemporalActiveWork", "canary_workflow_id"]

A = TypeVar("A", bound=Callable[..., Awaitable[Any]])


def _async_temporal_errors(fn: A) -> A:
    """``temporal_errors`` for a coroutine activity: the project's errors become ApplicationErrors."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except OrchestratorError as exc:
            raise application_error(exc) from None

    return wrapper  # type: ignore[return-value]


class ChaosActivities(ActivityClients):
    def __init__(
        self,
        settings: Settings,
        api_client: ApiClient | None = None,
        metrics: MetricProvider | None = None,
        temporal: Client | None = None,
        policy: ChaosPolicy | None = None,
        rails_policy: RailsPolicy | None = None,
    ) -> None:
        super().__init__(settings, api_client, metrics)
        self._temporal = temporal
        self._policy = policy
        # The policy rails (freezes, staffed hours, recent deployments, incidents, health) run in chaos.plan,
        # before every round, when a policy is given or declared in ORCHESTRATOR_POLICY (as the chart does).
        # Read when the worker is built, so a bad policy file stops the worker at start.
        self._rails_policy = rails_policy or _declared_policy()
        # What the janitor cannot see is said once per worker, not once a minute.
        self._blind_reported: set[str] = set()

    @property
    def policy(self) -> ChaosPolicy:
        if self._policy is None:
            self._policy = ChaosPolicy.from_env()
        return self._policy

    def _objects(self) -> Objects:
        from orchestrator.chaos.objects import Objects

        return Objects(self.api)

    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.plan,
            self.record,
            self.inject,
            self.revert,
            self.evaluate_check,
            self.save_run,
            self.janitor,
            self.ready_counts,
            self.wait_ready,
        ]

    @activity.defn(name="chaos.plan")
    @_async_temporal_errors
    async def plan(self, req: PlanRequest) -> Plan:
        from orchestrator.chaos.planning import prepare

        temporal = self._temporal or activity.client()
        active = TemporalActiveWork(temporal)
        plan = await prepare(
            objects=self._objects(), metrics=self.metrics, active=active,
            policy=self.policy, experiment=req.experiment, run=req.run, now=req.now,
            workflow_id=req.workflow_id, canary_id=canary_workflow_id, round_=req.round, rails=req.rails,
        )
        if req.rails and self._rails_policy is not None:
            from orchestrator.rails.run import chaos_preflight

            await chaos_preflight(api_client=self.api, metrics=self.metrics, active=active, chaos_policy=self.policy,
                                  rails_policy=self._rails_policy, experiment=req.experiment, plan=plan,
                                  workflow_id=req.workflow_id, now=req.now)
        return plan

    @activity.defn(name="chaos.record")
    @temporal_errors
    def record(self, entry: LedgerEntry) -> LedgerEntry:
        from orchestrator.chaos import ledger

        return ledger.record(self._objects(), entry)

    @activity.defn(name="chaos.inject")
    @temporal_errors
    def inject(self, entry: LedgerEntry) -> str:
        """Heartbeats before every write, so a cancelled run stops its injection before it reverts."""
        from orchestrator.chaos.faults import injector_for

        def alive() -> bool:
            activity.heartbeat()
            return not activity.is_cancelled()

        done = injector_for(entry.fault, self._objects()).inject(entry, alive)
        if activity.is_cancelled():
            # Cancelled, not completed: the workflow (waiting for this to stop) then reverts.
            raise CancelledError(f"cancelled: {done}")
        return done

    @activity.defn(name="chaos.revert")
    @temporal_errors
    def revert(self, entry: LedgerEntry) -> str:
        from orchestrator.chaos.faults import injector_for

        return injector_for(entry.fault, self._objects()).revert(entry)

    @activity.defn(name="chaos.evaluate_check")
    @temporal_errors
    def evaluate_check(self, req: EvaluateRequest) -> Measurement:
        from orchestrator.gates.evaluate import evaluate

        return evaluate(req.check, self.metrics, req.variables, at=None)

    @activity.defn(name="chaos.save_run")
    @temporal_errors
    def save_run(self, req: RunRecordRequest) -> str:
        from orchestrator.chaos.planning import variables_for
        from orchestrator.chaos.record import record_run, wants_budget_after
        from orchestrator.chaos.safety import read_error_budget
        from orchestrator.scoring.store import RunStore

        budget = req.experiment.spec.safety.error_budget
        after = None
        if budget is not None and wants_budget_after(req):
            # The workflow schedules this after the recovery window, so this read closes the burn window.
            try:
                after = read_error_budget(self.metrics, budget, variables_for(req.experiment))
            except OrchestratorError as exc:
                # Losing the whole record over one unreadable figure would be worse than recording it
                # without that figure (and saying why in its message).
                after = BudgetReading(query=budget.query, at=now(),
                                      message=f"the error budget could not be read: {exc}")
        # Also reads the experiment's scoring queries (impact, detection, affected) over the run window.
        record = record_run(req, self.metrics, budget_after=after)
        with RunStore.from_settings(self._settings) as store:
            store.save(record)
        return record.run_id


    @activity.defn(name="chaos.ready_counts")
    @temporal_errors
    def ready_counts(self, experiment: ChaosExperiment) -> dict[str, int]:
        """Ready pods of each workload the experiment targets (a GameDay's "before", and its look after)."""
        from orchestrator.chaos.radius import ready_by_workload

        target = experiment.spec.target
        return ready_by_workload(self._objects(), target.namespace, dict(target.selector))

    @activity.defn(name="chaos.wait_ready")
    @temporal_errors
    def wait_ready(self, req: ReadyWait) -> dict[str, int]:
        """Look until every workload is back at its ready count, or ``within_seconds`` passed; the last look.

        One heartbeating activity rather than a look per workflow timer: the GameDay's history grows by one
        wait, not by every look.
        """
        import time

        from orchestrator.chaos.radius import ready_by_workload

        target = req.experiment.spec.target
        deadline = time.monotonic() + req.within_seconds
        while True:
            counts = ready_by_workload(self._objects(), target.namespace, dict(target.selector))
            back = all(counts.get(key, 0) >= wanted for key, wanted in req.ready.items())
            activity.heartbeat(counts)
            if back or time.monotonic() >= deadline or activity.is_cancelled():
                return counts
            time.sleep(0.5)

    @activity.defn(name="chaos.janitor")
    @temporal_errors
    def janitor(self) -> JanitorResult:
        """One scheduled sweep: revert expired faults where this installation may look; count it in metrics."""
        from orchestrator import telemetry
        from orchestrator.chaos.janitor import log, sweep_scoped

        try:
            report = sweep_scoped(self._objects())
        except Exception:
            telemetry.record_janitor_run("failed")
            raise
        telemetry.record_janitor_run("ok")
        for line in report.blind:
            if line not in self._blind_reported:
                self._blind_reported.add(line)
                log.warning("janitor: %s", line)
        for line in report.reverted:
            log.info("janitor reverted %s", line)
        for line in report.problems:
            log.warning("janitor could not revert %s", line)
        return JanitorResult(reverted=report.reverted, pending=len(report.pending), problems=report.problems,
                             blind=report.blind)


def _declared_policy() -> RailsPolicy | None:
    import os

    from orchestrator.specs.policy import ENV_VAR, policy_from_env

    return policy_from_env() if os.environ.get(ENV_VAR) else None


def now() -> datetime:
    return datetime.now(UTC)
