"""A workflow that calls ``rails.check`` as the canary, flag-ramp and chaos workflows are to: first thing, with
its own id and clock, and ends "refused" with the report's reason when a rail refuses."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from orchestrator.rails.models import RailsReport, RailsRequest


@workflow.defn(name="RailsProbe")
class RailsProbe:
    @workflow.run
    async def run(self, req: RailsRequest) -> RailsReport:
        req = req.model_copy(update={"workflow_id": workflow.info().workflow_id, "at": workflow.now()})
        report: RailsReport = await workflow.execute_activity(
            "rails.check", req, result_type=RailsReport, start_to_close_timeout=timedelta(seconds=60))
        return report
