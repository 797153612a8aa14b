"""Starting, listing and stopping experiment workflows: what the CLI and the schedules share.

``abort_all`` is the big red button: it sends ``abort`` to every running experiment (each reverts
through its own ledger) and, without waiting for them, sweeps the cluster with the janitor in
``force`` mode, so faults are reverted right away even when a workflow is stuck, its worker is down
or its history is gone: the marks on the objects are enough. Reverting twice is harmless: every
revert is a no-op on an object no longer marked by its run. The report says what was aborted and
reverted, what could not be reverted (an unreadable ledger entry, a failed write) and where the
sweep could not look (a forbidden list), so "nothing reported" really means nothing is left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.api.chaos import (
    WORKFLOW_TYPE,
    ChaosInput,
    ChaosStatus,
    ControlRequest,
    ControlResponse,
    memo_for,
    workflow_id,
)
from orchestrator.errors import RefusedError

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from orchestrator.chaos.janitor import JanitorReport
    from orchestrator.chaos.objects import Objects

__all__ = ["AbortAllReport", "abort", "abort_all", "control", "running", "start", "status"]

RUNNING_QUERY = f"WorkflowType='{WORKFLOW_TYPE}' AND ExecutionStatus='Running'"


async def start(client: Client, inp: ChaosInput, task_queue: str) -> WorkflowHandle[object, ChaosStatus]:
    """Start one experiment; refused when the same experiment is already running."""
    from temporalio.exceptions import WorkflowAlreadyStartedError

    target = inp.experiment.spec.target
    wid = workflow_id(target.namespace, inp.experiment.metadata.name)
    try:
        return await client.start_workflow(
            WORKFLOW_TYPE, inp, id=wid, task_queue=task_queue, memo=memo_for(inp), result_type=ChaosStatus)
    except WorkflowAlreadyStartedError:
        raise RefusedError(f"experiment {inp.experiment.metadata.name} is already running (workflow {wid})") from None


async def status(client: Client, wid: str) -> ChaosStatus:
    result: ChaosStatus = await client.get_workflow_handle(wid).query("status", result_type=ChaosStatus)
    return result


async def abort(client: Client, wid: str, reason: str = "", by: str = "") -> ControlResponse:
    """Stop the experiment: it reverts every fault at once."""
    return await control(client, wid, "abort", reason, by)


async def control(client: Client, wid: str, action: str, reason: str = "", by: str = "") -> ControlResponse:
    """Send one of the experiment's controls (``abort``, ``retry``); a refusal is a ``RefusedError``."""
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError, RPCStatusCode

    handle = client.get_workflow_handle(wid)
    try:
        result: ControlResponse = await handle.execute_update(
            action, ControlRequest(reason=reason, by=by), result_type=ControlResponse)
        return result
    except WorkflowUpdateFailedError as exc:
        raise RefusedError(f"{wid}: {exc.cause or exc}") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise RefusedError(f"no running experiment {wid}") from None
        raise


async def running(client: Client) -> list[str]:
    """Workflow ids of every running experiment."""
    return [wf.id async for wf in client.list_workflows(RUNNING_QUERY)]


@dataclass
class AbortAllReport:
    aborted: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reverted: list[str] = field(default_factory=list)
    blind: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Every fault it could find is gone and it could look everywhere faults may be."""
        return not self.problems and not self.blind


async def abort_all(client: Client, objects: Objects, reason: str = "abort --all", by: str = "") -> AbortAllReport:
    from orchestrator.chaos.janitor import sweep_scoped

    report = AbortAllReport()
    ids = await running(client)

    async def one(wid: str) -> None:
        try:
            await asyncio.wait_for(abort(client, wid, reason, by), timeout=10)
            report.aborted.append(wid)
        except (RefusedError, TimeoutError) as exc:
            report.problems.append(f"{wid}: {exc or 'no answer within 10s'}")

    await asyncio.gather(*(one(w) for w in ids))
    swept: JanitorReport = await asyncio.to_thread(lambda: sweep_scoped(objects, None, force=True))
    report.reverted = swept.reverted
    report.problems += swept.problems
    report.blind = swept.blind
    return report
