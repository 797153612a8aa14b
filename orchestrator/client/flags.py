"""Start a feature-flag ramp: one ramp per flag and provider, refused (exit 1) while another runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.api.flags import WORKFLOW_TYPE, FlagRampInput, FlagRampStatus
from orchestrator.errors import RefusedError
from orchestrator.specs.flags import FlagRamp

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle


async def start(client: Client, task_queue: str, ramp: FlagRamp) -> WorkflowHandle[Any, FlagRampStatus]:
    from temporalio.exceptions import WorkflowAlreadyStartedError

    wid = ramp.workflow_id()
    try:
        return await client.start_workflow(WORKFLOW_TYPE, FlagRampInput(ramp=ramp), id=wid, task_queue=task_queue,
                                           result_type=FlagRampStatus)
    except WorkflowAlreadyStartedError:
        raise RefusedError(
            f"a ramp of {ramp.spec.provider.type} flag {ramp.spec.flag} is already running (workflow {wid}); "
            f"watch it with: orchestrator flag status {wid}") from None


__all__ = ["start"]
