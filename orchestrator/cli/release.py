"""``orchestrator release``: run a canary across the operator's clusters in waves, watch it, steer it.

Exit codes as everywhere: 0 completed, 1 stopped, aborted or refused, 2 invalid input, 3 Temporal
unreachable, 4 still running when ``--timeout`` ran out or waiting for an approval (``--exit-on-pause``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    SECONDS,
    emit_json,
    finish,
    handle_errors,
    output_option,
    run,
    settings,
)

if TYPE_CHECKING:
    from orchestrator.api.release import ReleaseState


@click.group()
def release() -> None:
    """Fleet releases: run, status, pause, resume, abort, approve, retry."""


def render(state: ReleaseState, output: str) -> None:
    from orchestrator.client.release import matrix

    rows = matrix(state)
    stop = state.stop
    if output == "json":
        emit_json({"name": state.name, "phase": state.phase.value, "wave": min(state.wave + 1, state.waves),
                   "waves": state.waves, "stop": stop.model_dump() if stop else None, "matrix": rows,
                   "events": [e.model_dump(mode="json") for e in state.events]})
        return
    verdict = f" — {stop.reason}" if stop else ""
    if output == "markdown":
        click.echo(f"### Release {state.name}: {state.phase.value}{verdict}\n")
        click.echo("| wave | cluster | phase | verdict |\n| --- | --- | --- | --- |")
        for row in rows:
            text = str(row["verdict"]).replace("|", "\\|").replace("\n", " ")
            click.echo(f"| {row['wave']} | {row['cluster']} | {row['phase']} | {text} |")
        return
    click.echo(f"release {state.name}: {state.phase.value}{verdict}")
    for row in rows:
        click.echo(f"  wave {row['wave']:<3} {row['cluster']:<24} {row['phase']:<12} {row['verdict']}")


@release.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait/--no-wait", default=False, help="Follow the release and exit with its outcome.")
@click.option("--timeout", type=SECONDS, default=None, help="With --wait: give up waiting after SECONDS (exit 4).")
@click.option("--exit-on-pause", is_flag=True, help="With --wait: exit 4 when a wave waits for approval.")
@output_option
@click.pass_context
@handle_errors
def run_cmd(ctx: click.Context, file: str, wait: bool, timeout: float | None, exit_on_pause: bool,
            output: str) -> None:
    """Start the release in FILE; with --wait, follow it and exit 0 completed / 1 stopped."""
    from orchestrator.client import release as client_release
    from orchestrator.specs.operator import ENV_VAR, operator_settings_from_env

    model = client_release.load(file)
    for warning in model.warnings():
        click.echo(f"{file}: warning: {warning}", err=True)
    operator = operator_settings_from_env()
    if operator.source != "(none)":
        client_release.check_clusters(model, operator, file)
    elif output == "text":
        click.echo(f"note: no operator settings here (${ENV_VAR}): the worker checks the cluster names", err=True)
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.client.pollers import require_worker
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        await require_worker(client, s, "nothing was started")
        handle = await client_release.start(client, s.task_queue, model)
        if not wait:
            emit_json({"workflow_id": handle.id}) if output == "json" else click.echo(handle.id)
            return EXIT_OK
        return await follow(handle, output, timeout, exit_on_pause)

    finish(run(main()))


async def follow(handle: Any, output: str, timeout: float | None, exit_on_pause: bool) -> int:
    import asyncio

    from orchestrator.api.release import FINAL_PHASES, ReleasePhase, ReleaseState

    shown = 0
    began = time.monotonic()
    while True:
        state: ReleaseState = await handle.query("status", result_type=ReleaseState)
        if output == "text":
            for event in state.events[shown:]:
                click.echo(f"{event.at:%H:%M:%S} {event.message}")
            shown = len(state.events)
        if state.phase in FINAL_PHASES:
            if output != "text":
                render(state, output)
            return EXIT_OK if state.phase is ReleasePhase.COMPLETED else EXIT_FAILED
        if exit_on_pause and state.phase is ReleasePhase.WAITING_APPROVAL:
            render(state, output)
            return EXIT_PENDING
        if timeout is not None and time.monotonic() - began > timeout:
            render(state, output)
            return EXIT_PENDING
        await asyncio.sleep(1.0)


@release.command("status")
@click.argument("name")
@output_option
@click.pass_context
@handle_errors
def status_cmd(ctx: click.Context, name: str, output: str) -> None:
    """Show release NAME: the matrix of wave x cluster x phase x verdict."""
    from orchestrator.api.release import ReleaseState, workflow_id

    s = settings(ctx)

    async def main() -> ReleaseState:
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        wid = name if name.startswith("release-") else workflow_id(name)
        state: ReleaseState = await client.get_workflow_handle(wid).query("status", result_type=ReleaseState)
        return state

    render(run(main()), output)


def _control(update: str, summary: str) -> click.Command:
    @click.argument("name")
    @click.option("--reason", default="", help="Why (recorded with the request).")
    @click.pass_context
    @handle_errors
    def command(ctx: click.Context, name: str, reason: str) -> None:
        from orchestrator.client.release import steer

        for line in run(steer(settings(ctx), name, update, reason)):
            click.echo(line)

    command.__doc__ = summary
    return release.command(update)(command)


pause = _control("pause", "Pause release NAME: no new canary starts; the running ones pause too.")
resume = _control("resume", "Resume release NAME and its paused canaries.")
abort = _control("abort", "Abort release NAME: every running canary rolls back, then onFailure's undo runs.")
approve = _control("approve", "Approve the wave release NAME waits for.")
retry = _control("retry", "Re-attempt the stuck restores of release NAME now.")
