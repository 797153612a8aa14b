"""The chaos janitor as a workflow, so a Temporal Schedule can run it every minute.

One activity (``chaos.janitor``) does the sweep; the workflow only gives it a durable, visible run
(``chaos list`` reads the schedule's recent runs and their results). The sweep is idempotent and
cheap, so a failed attempt is simply retried a few times and otherwise left to the next tick:
the schedule's overlap policy SKIP keeps two sweeps from ever running at once.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from orchestrator.chaos.models import JanitorResult

JANITOR_TYPE = "ChaosJanitor"
JANITOR_ACTIVITY = "chaos.janitor"


@workflow.defn(name=JANITOR_TYPE)
class JanitorWorkflow:
    @workflow.run
    async def run(self) -> JanitorResult:
        result: JanitorResult = await workflow.execute_activity(
            JANITOR_ACTIVITY, result_type=JanitorResult, start_to_close_timeout=timedelta(seconds=50),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(seconds=2)))
        return result


__all__ = ["JANITOR_ACTIVITY", "JANITOR_TYPE", "JanitorWorkflow"]
