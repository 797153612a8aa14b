"""Start a canary rollout: one rollout per target, refused (exit 1) while another runs on it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.api.canary import WORKFLOW_TYPE, CanaryInput, CanaryStatus, workflow_id
from orchestrator.errors import RefusedError
from orchestrator.specs.canary import CanaryRollout

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle


async def start(client: Client, task_queue: str, rollout: CanaryRollout, image: str | None = None
                ) -> WorkflowHandle[Any, CanaryStatus]:
    from temporalio.exceptions import WorkflowAlreadyStartedError

    target = rollout.spec.target
    wid = workflow_id(target.namespace, target.deployment)
    try:
        return await client.start_workflow(WORKFLOW_TYPE, CanaryInput(rollout=rollout, image=image), id=wid,
                                           task_queue=task_queue, result_type=CanaryStatus)
    except WorkflowAlreadyStartedError:
        raise RefusedError(
            f"a rollout of {target.namespace}/{target.deployment} is already running (workflow {wid}); "
            f"watch it with: orchestrator canary status {wid}") from None


__all__ = ["start"]
