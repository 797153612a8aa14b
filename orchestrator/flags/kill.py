"""The kill switch: turn a flag off at its provider now, then stop any ramp of that flag.

Order matters. The provider is written first and directly, from the caller's process,
so the flag is off within one API call even when no worker is running. Only then is the
ramp (workflow ``flag-ramp-<provider>-<key>``) aborted through its ``abort`` update; a
ramp whose worker does not answer is cancelled instead, which reverts as soon as a worker
returns. Once the ramp has stopped, the flag is turned off a second time: a stage change
that was in flight while the switch was thrown cannot outlive it.

Where the provider lives comes from the running ramp's own input (read from its
history, which needs no worker) or from a spec file, for flags with no ramp running.

A write is not proof. After it, the switch reads the flag back from the provider until it
reports 0 % (or the flag disabled) and, for flagd, evaluates the definition it read back with
the OpenFeature SDK and flagd's file provider (``orchestrator.flags.evaluate``) until no
context is served the ramped variant. The time from the call to that confirmed state is
reported (``confirmed_off_seconds``); a switch that cannot be confirmed within the timeout
says so instead of claiming success.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from orchestrator.errors import FlagProviderError, RefusedError
from orchestrator.flags import build_provider
from orchestrator.flags.base import Change, FlagProvider, FlagTarget, ProviderClients
from orchestrator.specs.flags import FlagRamp, ramp_workflow_id

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle

    from orchestrator.specs.operator import OperatorSettings

PROVIDER_TYPES = ("flagd", "unleash")


@dataclass
class KillResult:
    flag: str
    provider: str
    change: Change
    workflow_id: str | None = None
    ramp: str = "none running"  # none running | aborted | cancelled | not stopped yet
    notes: list[str] = field(default_factory=list)
    # From the turn-off call to the moment the provider read back off (and, for flagd, evaluated off).
    confirmed_off_seconds: float | None = None
    verification: list[str] = field(default_factory=list)


async def running_ramp(
    client: Client, key: str, provider: str | None
) -> tuple[WorkflowHandle[Any, Any], FlagRamp] | None:
    """The running ramp of ``key`` (any provider unless one is named) and the spec it was started with."""
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    for kind in (provider,) if provider else PROVIDER_TYPES:
        handle = client.get_workflow_handle(ramp_workflow_id(kind, key))
        try:
            desc = await handle.describe()
        except RPCError:
            continue
        if desc.status != WorkflowExecutionStatus.RUNNING:
            continue
        history = await handle.fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        # Decoded as plain data: this layer sits below workflows/ and does not import it.
        [inp] = await client.data_converter.decode(started.input.payloads, [dict])
        try:
            ramp = FlagRamp.model_validate(inp["ramp"])
        except ValidationError:
            # Started by a release whose specs located their provider themselves (url, file): that
            # location is not trusted, so the operator's named provider must come from a spec file.
            raise RefusedError(
                f"ramp {handle.id} names its provider the old way (a URL or file in the spec), which is no "
                "longer trusted: pass the ramp's spec file rewritten with the operator's provider name"
            ) from None
        return client.get_workflow_handle(handle.id, run_id=desc.run_id), ramp
    return None


async def kill(
    key: str,
    *,
    client: Client | None,
    spec: FlagRamp | None = None,
    provider: str | None = None,
    kube_api_client: Callable[[], Any] | None = None,
    env: Mapping[str, str] | None = None,
    operator: OperatorSettings | None = None,
    reason: str = "",
    by: str = "",
    stop_timeout: float = 15.0,
    verify: bool = True,
    verify_timeout: float = 10.0,
) -> KillResult:
    found = await running_ramp(client, key, provider) if client is not None else None
    ramp = found[1] if found else spec
    if ramp is None:
        raise RefusedError(
            f"no running ramp of {key!r} found, so the provider is unknown: pass the ramp's spec file"
        )
    if ramp.spec.flag != key:
        raise RefusedError(f"the spec is for flag {ramp.spec.flag!r}, not {key!r}")
    # The provider's location is the operator's (``operator``, else ``ORCHESTRATOR_SETTINGS_FILE`` in ``env``).
    clients = ProviderClients(
        kube_api_client=kube_api_client, env=env if env is not None else os.environ, operator=operator
    )
    target = FlagTarget(key, ramp.spec.variant, ramp.spec.control)
    flag_provider = build_provider(ramp.spec.provider, target, clients)

    started = time.monotonic()
    change = await asyncio.to_thread(flag_provider.turn_off)
    result = KillResult(flag=key, provider=ramp.spec.provider.type, change=change)
    if verify:
        result.confirmed_off_seconds, result.verification = await asyncio.to_thread(
            confirm_off, flag_provider, target, started, verify_timeout)
    if found is None:
        return result

    handle = found[0]
    result.workflow_id = handle.id
    result.ramp = await _stop_ramp(handle, reason or "kill switch", by, stop_timeout)
    # The ramp may have been writing a stage while the switch was thrown: make sure it is off.
    try:
        again = await asyncio.to_thread(flag_provider.turn_off)
    except FlagProviderError as exc:
        result.notes.append(f"second turn-off failed: {exc}")
    else:
        if again.changed:
            result.notes.append("a stage change raced the kill switch and was undone")
            if verify:
                result.confirmed_off_seconds, result.verification = await asyncio.to_thread(
                    confirm_off, flag_provider, target, started, verify_timeout)
    return result


def confirm_off(
    provider: FlagProvider, target: FlagTarget, started: float, timeout: float, poll: float = 0.2
) -> tuple[float | None, list[str]]:
    """Seconds from ``started`` until the flag is confirmed off (None if not within ``timeout``), and how."""
    from orchestrator.flags.evaluate import served
    from orchestrator.flags.flagd import FlagdProvider

    deadline = started + timeout
    while True:
        allocation = provider.current()
        off = allocation.percent == 0 or not allocation.enabled
        lines = [f"read back from {provider.type}: {allocation.percent:g}% get {target.variant}"
                 + (f" ({allocation.detail})" if allocation.detail else "")
                 + ("" if allocation.enabled else ", flag disabled")]
        if off and isinstance(provider, FlagdProvider):
            doc, _ = provider.store.read()
            hits, total = served(doc, target.key, target.variant)
            off = hits == 0
            lines.append(f"evaluated with OpenFeature + flagd file provider: {hits} of {total} contexts "
                         f"get {target.variant}")
        if off:
            return time.monotonic() - started, lines
        if time.monotonic() > deadline:
            return None, [*lines, f"not confirmed off within {timeout:g}s"]
        time.sleep(poll)


async def _stop_ramp(handle: WorkflowHandle[Any, Any], reason: str, by: str, timeout: float) -> str:
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    try:
        await asyncio.wait_for(
            # The update's ControlRequest, as plain data (see running_ramp).
            handle.execute_update("abort", {"reason": reason, "by": by, "off": True}),
            timeout=timeout / 2,
        )
        how = "aborted"
    except (TimeoutError, WorkflowUpdateFailedError, RPCError):
        # No worker answered (or the ramp is already stopping): a cancellation request is
        # recorded in history and honoured by the next worker, which reverts in ``finally``.
        try:
            await handle.cancel()
        except RPCError:
            return "already stopped"
        how = "cancelled"
    try:
        await asyncio.wait_for(handle.result(), timeout=timeout / 2)
    except TimeoutError:
        return f"{how}, not stopped yet"
    except Exception:
        pass  # a cancelled ramp ends with a cancellation error: that is the expected end
    return how
