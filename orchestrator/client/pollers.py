"""Is a worker listening? The check every command that needs one makes before it waits.

A workflow started on a task queue that no worker polls sits there silently, and an
update (abort, promote, ...) sent to it waits until some worker runs the workflow's
code — minutes, or forever. Temporal knows who polls: ``DescribeTaskQueue`` lists the
pollers it saw recently, each with the time of its last poll. So the commands ask first
and say at once when nobody listens, and every control request is bounded by a timeout
whose message says what happens to the request when a worker comes back.

Why "recently": the server keeps a poller in the list for a few minutes after its last
poll, and a live worker's long poll lasts up to a minute, so a poller counts as present
when it polled within ``POLLER_FRESH_SECONDS``. A worker that died seconds ago may still
count; the control timeout covers that case.

One module, called by the ``canary``, ``flag`` and ``chaos`` commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from temporalio.client import Client

    from orchestrator.config import Settings

__all__ = [
    "CONTROL_TIMEOUT_SECONDS",
    "ControlTimeoutError",
    "NoWorkerError",
    "bounded_control",
    "control",
    "pollers",
    "require_worker",
]

T = TypeVar("T")

POLLER_FRESH_SECONDS = 90.0
CONTROL_TIMEOUT_SECONDS = 30.0
START_HINT = "start one with `orchestrator worker` (or `orchestrator sandbox up` for the local sandbox)"


class NoWorkerError(OrchestratorError):
    """No worker polls the task queue: nothing would run what the command asks for."""

    exit_code = 3


class ControlTimeoutError(OrchestratorError):
    """A control request got no answer in time (a worker is listed but did not answer)."""

    exit_code = 3


async def pollers(client: Client, namespace: str, task_queue: str) -> list[str]:
    """Identities of the workflow pollers of ``task_queue`` seen within ``POLLER_FRESH_SECONDS``."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.service import RPCError

    request = DescribeTaskQueueRequest(
        namespace=namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    try:
        response = await client.workflow_service.describe_task_queue(request, timeout=timedelta(seconds=10))
    except RPCError:
        # A server that cannot describe the queue says nothing about workers; do not block on it.
        return ["(unknown)"]
    now = datetime.now(UTC)
    fresh = []
    for poller in response.pollers:
        seen = poller.last_access_time.ToDatetime(tzinfo=UTC) if poller.HasField("last_access_time") else now
        if (now - seen).total_seconds() <= POLLER_FRESH_SECONDS:
            fresh.append(poller.identity or "(anonymous)")
    return fresh


async def require_worker(client: Client, s: Settings, consequence: str, task_queue: str | None = None) -> list[str]:
    """Raise ``NoWorkerError`` at once when no worker polls the task queue; else the pollers.

    ``consequence`` completes the sentence "no worker polls task queue Q: ..." with what
    the command did or did not do, e.g. "nothing was started". ``task_queue`` defaults to
    the configured one (where a new workflow would go).
    """
    queue = task_queue or s.task_queue
    found = await pollers(client, s.temporal_namespace, queue)
    if not found:
        raise NoWorkerError(
            f"no worker polls task queue {queue!r} at {s.temporal_address}: {consequence}; {START_HINT}"
        )
    return found


async def workflow_task_queue(client: Client, workflow_id: str) -> str | None:
    """The task queue a running workflow's tasks go to (None when it cannot be described)."""
    from temporalio.service import RPCError

    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except RPCError:
        return None  # no such workflow: the control request itself says so
    return desc.task_queue


def not_sent(noun: str, action: str) -> str:
    """What happens to a ``noun`` (rollout, ramp, experiment) whose ``action`` was not sent."""
    return (
        f"{action} was not sent. The {noun} stays where it is until a worker returns: then it resumes where it "
        f"stopped (its gates and timers go on), and you can send {action} again"
    )


async def bounded_control(
    client: Client,
    s: Settings,
    workflow_id: str,
    noun: str,
    action: str,
    request: Awaitable[T],
    timeout: float = CONTROL_TIMEOUT_SECONDS,
    hint: str = "",
) -> T:
    """Check for a worker, then await ``request`` (an update) for at most ``timeout`` seconds.

    The worker checked for is one polling ``workflow_id``'s own task queue (it may have been
    started on another than the configured one). ``hint`` is added to both messages: what
    the user can do meanwhile without a worker.
    """
    try:
        queue = await workflow_task_queue(client, workflow_id)
        if queue is not None:
            await require_worker(client, s, not_sent(noun, action) + hint, queue)
    except BaseException:
        if asyncio.iscoroutine(request):
            request.close()  # never started: no "coroutine was never awaited" warning
        raise
    from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError

    try:
        return await asyncio.wait_for(request, timeout)
    # An update cancelled by the timeout ends with the SDK's own error rather than CancelledError.
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        raise ControlTimeoutError(
            f"{action} got no answer within {timeout:g}s: the worker on task queue {queue or s.task_queue!r} "
            f"did not process it (it may have just stopped or be overloaded). The server holds an unanswered "
            f"request in memory only: it may still be applied when a worker next runs the {noun}, or be dropped; "
            f"check with `status` and send {action} again if it was not applied{hint}"
        ) from None


async def control(s: Settings, noun: str, workflow_id: str, update: str, reason: str = "") -> str:
    """``send_control`` for the canary and flag commands, behind the worker check and the timeout."""
    from orchestrator.client.temporal import connect_temporal, send_control

    client = await connect_temporal(s)
    return await bounded_control(client, s, workflow_id, noun, update, send_control(s, workflow_id, update, reason))
