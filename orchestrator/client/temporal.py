"""Reaching Temporal from outside the workers: connect (TLS, API key), steer a run, list runs.

Every command, schedule and script that starts, steers or reads a workflow goes through here, so the
address, the TLS material and the data converter are chosen once, and an unreachable server is one
``UnreachableError`` (exit 3) rather than a client traceback. Its message, like every text read
back from a run's history, is redacted (``orchestrator.redact``): the address may carry userinfo and
the connection error quotes it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from orchestrator.config import Settings
from orchestrator.errors import RefusedError, UnreachableError
from orchestrator.redact import redact
from orchestrator.specs.files import read_bytes

if TYPE_CHECKING:
    from temporalio.client import Client

# Certificates and keys are a few KiB; a CA bundle a few hundred.
TLS_FILE_BYTES = 1024 * 1024


def _read(path: str | None, setting: str) -> bytes | None:
    if not path:
        return None
    return read_bytes(path, limit=TLS_FILE_BYTES, field=setting)


def temporal_tls(s: Settings) -> Any:
    """``True``/``False`` or a ``TLSConfig`` when certificates are configured (mTLS, private CA)."""
    if not (s.temporal_tls_cert or s.temporal_tls_ca or s.temporal_tls_server_name):
        return s.temporal_tls or bool(s.temporal_api_key)
    from temporalio.service import TLSConfig

    return TLSConfig(
        client_cert=_read(s.temporal_tls_cert, "ORCHESTRATOR_TEMPORAL_TLS_CERT"),
        client_private_key=_read(s.temporal_tls_key, "ORCHESTRATOR_TEMPORAL_TLS_KEY"),
        server_root_ca_cert=_read(s.temporal_tls_ca, "ORCHESTRATOR_TEMPORAL_TLS_CA"),
        domain=s.temporal_tls_server_name,
    )


async def connect_temporal(s: Settings) -> Client:
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter

    try:
        return await asyncio.wait_for(
            Client.connect(
                s.temporal_address,
                namespace=s.temporal_namespace,
                data_converter=pydantic_data_converter,
                tls=temporal_tls(s),
                api_key=s.temporal_api_key,
            ),
            timeout=10,
        )
    except (RuntimeError, OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreachableError("Temporal", s.temporal_address, redact(reason)[:200]) from None


async def send_control(s: Settings, workflow_id: str, update: str, reason: str = "") -> str:
    """Send a control update (pause, resume, promote, abort, approve) and return the workflow's answer."""
    import getpass

    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    from orchestrator.api.canary import ControlRequest, ControlResponse

    client = await connect_temporal(s)
    handle = client.get_workflow_handle(workflow_id)
    try:
        resp = await handle.execute_update(
            update, ControlRequest(reason=reason, by=getpass.getuser()), result_type=ControlResponse
        )
    except WorkflowUpdateFailedError as exc:
        raise RefusedError(f"{update} refused: {exc.cause}") from None
    except RPCError as exc:
        raise RefusedError(f"{update} refused: {exc.message}") from None
    return f"{handle.id}: {resp.message}"


async def list_runs(s: Settings, workflow_type: str, show_all: bool) -> list[dict[str, str]]:
    client = await connect_temporal(s)
    query = f"WorkflowType = '{workflow_type}'"
    if not show_all:
        query += " AND ExecutionStatus = 'Running'"
    rows = []
    async for wf in client.list_workflows(query):
        rows.append({"workflow_id": wf.id, "status": wf.status.name.lower() if wf.status else "unknown",
                     "started": wf.start_time.isoformat()})
    return rows


async def last_task_failure(handle: Any) -> str | None:
    """The failure of the run's last workflow task, when that task failed and none completed since.

    A run whose workflow task keeps failing (a bad upgrade's nondeterminism, a bug) answers no query,
    but its history says why: this is what ``status`` can show without a worker able to run it.
    """
    from temporalio.api.enums.v1 import EventType

    failure: str | None = None
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            attrs = event.workflow_task_failed_event_attributes
            # Redacted before it is cut, so a cut cannot leave half a credential unrecognisable.
            failure = redact(" ".join((attrs.failure.message or str(attrs.cause)).split()))[:400]
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            failure = None
    return failure


__all__ = ["connect_temporal", "last_task_failure", "list_runs", "send_control", "temporal_tls"]

