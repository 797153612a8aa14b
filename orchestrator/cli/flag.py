"""``orchestrator flag``: ramp feature flags through gated stages, steer the ramps, and kill a flag.

Exit codes follow the canary CLI: 0 completed, 1 reverted/aborted/refused, 2 invalid
input, 3 unreachable, 4 still running when ``--timeout`` expired. A ramp is addressed by
its workflow id (``flag-ramp-<provider>-<key>``) or by the flag key with ``--provider``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli import rails as rails_cli
from orchestrator.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    SECONDS,
    emit_json,
    fail,
    finish,
    handle_errors,
    output_option,
    print_runs,
    run,
    settings,
)
from orchestrator.cli.follow import Follower, query_failure
from orchestrator.errors import RefusedError

if TYPE_CHECKING:
    # Temporal's client and the pydantic models load inside the commands, so ``flag --help`` stays fast.
    from temporalio.client import WorkflowHandle

    from orchestrator.api.flags import FlagRampStatus
    from orchestrator.config import Settings
    from orchestrator.specs.flags import FlagRamp


@click.group()
def flag() -> None:
    """Feature-flag ramps: ramp, status, pause, resume, promote, abort, retry, list, kill."""


def workflow_id_for(name: str, provider: str) -> str:
    from orchestrator.specs.flags import ramp_workflow_id

    return name if name.startswith("flag-ramp-") else ramp_workflow_id(provider, name)


provider_option = click.option(
    "--provider", "-p", type=click.Choice(["flagd", "unleash"]), default="flagd", show_default=True,
    help="Provider of the flag when NAME is a flag key.")


# ---- rendering ------------------------------------------------------------------------------------


def status_text(st: FlagRampStatus) -> str:
    from orchestrator.cli.render import gate_line

    lines = [
        f"{st.name}  {st.provider} flag {st.flag}  variant {st.variant} (control {st.control or '-'})",
        f"phase {st.phase.value}   stage {min(st.stage + 1, st.stages)}/{st.stages}   at {st.percent:g}%"
        f"{'   PAUSED' if st.paused else ''}",
    ]
    if st.reason:
        lines.append(f"reason: {st.reason}")
    for record in st.history:
        sample = f", sample {record.sample:g}" if record.sample is not None else ""
        extended = f", extended {record.extensions}x" if record.extensions else ""
        lines.append(f"  stage {record.index + 1} {record.percent:g}%: {record.outcome}{sample}{extended}")
        for gate in record.gates:
            lines.append("    " + gate_line(gate))
    return "\n".join(lines)


def status_markdown(st: FlagRampStatus) -> str:
    out = [
        f"### Flag ramp `{st.flag}` ({st.provider}): **{st.phase.value}**",
        "",
        f"Variant `{st.variant}` at **{st.percent:g}%**; applied: "
        + (" → ".join(f"{p:g}%" for p in st.applied) or "nothing"),
    ]
    if st.reason:
        out += ["", f"> {st.reason}"]
    out += ["", "| stage | percent | outcome | sample | check | verdict | value | message |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in st.history:
        sample = "" if r.sample is None else f"{r.sample:g}"
        if not r.gates:
            out.append(f"| {r.index + 1} | {r.percent:g}% | {r.outcome} | {sample} | | | | |")
        for g in r.gates:
            value = "" if g.last is None or g.last.value is None else f"{g.last.value:.4g}"
            message = "" if g.last is None else g.last.message.replace("|", "\\|")
            out.append(f"| {r.index + 1} | {r.percent:g}% | {r.outcome} | {sample} | {g.check} | "
                       f"{g.phase.value} | {value} | {message} |")
    return "\n".join(out)


def render(st: FlagRampStatus, output: str) -> str:
    if output == "json":
        return st.model_dump_json(indent=2)
    if output == "markdown":
        return status_markdown(st)
    return status_text(st)


# ---- commands -------------------------------------------------------------------------------------


@flag.command("ramp")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait/--no-wait", default=False, help="Follow the ramp and exit with its outcome.")
@click.option("--timeout", type=SECONDS, default=None, help="With --wait: give up waiting after SECONDS (exit 4).")
@click.option("--dry-run", is_flag=True, help="Print every rail's verdict and start nothing (exit 1 if refused).")
@rails_cli.policy_option
@output_option
@click.pass_context
@handle_errors
def ramp_cmd(ctx: click.Context, file: str, wait: bool, timeout: float | None, output: str, dry_run: bool = False,
             policy_path: str | None = None) -> None:
    """Start ramping the flag of FILE; with --wait, follow it: exit 0 completed / 1 reverted or aborted."""
    from orchestrator.specs.flags import FlagRamp
    from orchestrator.specs.loader import load_file

    ramp = load_file(file, expect="FlagRamp")
    assert isinstance(ramp, FlagRamp)
    s = settings(ctx)
    if dry_run:
        finish(run(_dry_run(s, ramp, policy_path, output)))

    async def main() -> int:
        from orchestrator.client import flags as flags_client
        from orchestrator.client.pollers import require_worker
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        await require_worker(client, s, "nothing was started")
        handle = await flags_client.start(client, s.task_queue, ramp)
        wid = handle.id
        if not wait:
            if output == "json":
                emit_json({"workflow_id": wid, "run_id": handle.result_run_id})
            else:
                click.echo(wid)
            return EXIT_OK
        return await follow(handle, output, timeout)

    finish(run(main()))


async def _dry_run(s: Settings, ramp: FlagRamp, policy_path: str | None, output: str) -> int:
    from orchestrator.rails.models import RailsRequest
    from orchestrator.specs.policy import policy_from_env

    policy = policy_from_env(policy_path)
    report = await rails_cli.check(s, RailsRequest(kind="flag", spec=ramp, workflow_id=ramp.workflow_id()), policy)
    rails_cli.print_report(report, output, policy)
    return rails_cli.report_exit(report)


async def follow(handle: WorkflowHandle[Any, Any], output: str, timeout: float | None) -> int:
    import asyncio

    from orchestrator.api.flags import FINAL_PHASES, Phase
    from orchestrator.cli.render import gate_line

    deadline = None if timeout is None else time.monotonic() + timeout
    live = output == "text"
    follower = Follower(handle.id, live=live)
    seen_gates: dict[tuple[int, str], int] = {}
    st: FlagRampStatus | None = None
    while True:
        st, why = await read_status(handle)
        if st is None:
            follower.unreadable(why)
        else:
            follower.new_events(st)
        if st is not None and live:
            for record in st.history:
                for gate in record.gates:
                    key = (record.index, gate.check)
                    if seen_gates.get(key) != gate.measurements:
                        seen_gates[key] = gate.measurements
                        click.echo(f"         gate {gate_line(gate)}")
        if st is not None and st.phase in FINAL_PHASES:
            break
        if st is None and await closed(handle):
            fail(f"error: workflow {handle.id} ended without a status", EXIT_FAILED)
        if deadline is not None and time.monotonic() > deadline:
            click.echo(f"still in progress after {timeout:g}s (the ramp goes on): {handle.id}")
            return EXIT_PENDING
        await asyncio.sleep(1.0)
    if live:
        click.echo(f"result: {st.phase.value}" + (f" — {st.reason}" if st.reason else ""))
    else:
        click.echo(render(st, output))
    return EXIT_OK if st.phase == Phase.COMPLETED else EXIT_FAILED


async def query_status(handle: WorkflowHandle[Any, Any]) -> FlagRampStatus | None:
    return (await read_status(handle))[0]


async def read_status(handle: WorkflowHandle[Any, Any]) -> tuple[FlagRampStatus | None, str]:
    """The live status, or None and why it could not be read."""
    import asyncio

    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from orchestrator.cli import follow as follow_module
    from workflows.flag_ramp import FlagRampWorkflow

    try:
        return await asyncio.wait_for(handle.query(FlagRampWorkflow.status), follow_module.QUERY_TIMEOUT), ""
    except (WorkflowQueryFailedError, RPCError, TimeoutError) as exc:
        return None, query_failure(exc)


async def closed(handle: WorkflowHandle[Any, Any]) -> bool:
    from temporalio.client import WorkflowExecutionStatus

    desc = await handle.describe()
    return desc.status not in (None, WorkflowExecutionStatus.RUNNING)


@flag.command()
@click.argument("name")
@provider_option
@click.option("--watch", "-w", is_flag=True, help="Keep printing until the ramp ends.")
@output_option
@click.pass_context
@handle_errors
def status(ctx: click.Context, name: str, provider: str, watch: bool, output: str) -> None:
    """Show a ramp: NAME is a flag key (with --provider) or a workflow id."""
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        handle = client.get_workflow_handle(workflow_id_for(name, provider))
        if watch:
            return await follow(handle, output, None)
        st = await query_status(handle)
        if st is None:
            raise RefusedError(f"no ramp found for {name} (workflow {handle.id})")
        click.echo(render(st, output))
        return EXIT_OK

    finish(run(main()))


def _control(update: str, help_text: str) -> click.Command:
    @click.command(name=update, help=help_text)
    @click.argument("name")
    @provider_option
    @click.option("--reason", default="", help="Recorded in the ramp's events.")
    @click.pass_context
    @handle_errors
    def command(ctx: click.Context, name: str, provider: str, reason: str) -> None:
        from orchestrator.client.pollers import control

        s = settings(ctx)
        click.echo(run(control(s, "ramp", workflow_id_for(name, provider), update, reason)))
        finish(EXIT_OK)

    return command


for _name, _help in (
    ("pause", "Hold the ramp at its current percentage (gates keep watching)."),
    ("resume", "Continue a paused ramp."),
    ("promote", "Skip the remaining stages: 100 % now."),
    ("abort", "Stop the ramp and revert the flag to what it served before the ramp."),
    ("retry", "Re-attempt a stuck revert now (after fixing what made it fail)."),
):
    flag.add_command(_control(_name, _help))


@flag.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include finished ramps.")
@output_option
@click.pass_context
@handle_errors
def list_cmd(ctx: click.Context, show_all: bool, output: str) -> None:
    """List flag ramps (running ones by default)."""
    from orchestrator.client.temporal import list_runs

    s = settings(ctx)
    print_runs(run(list_runs(s, "FlagRamp", show_all)), output, "flag ramps", show_all)
    finish(EXIT_OK)


@flag.command()
@click.argument("key")
@click.option("--provider", "-p", type=click.Choice(["flagd", "unleash"]), default=None,
              help="Provider of the flag (default: whichever has a running ramp of KEY).")
@click.option("--file", "-f", "file", type=click.Path(dir_okay=False), default=None,
              help="A FlagRamp spec naming the provider, for a flag with no ramp running.")
@click.option("--reason", default="", help="Recorded in the ramp's events.")
@output_option
@click.pass_context
@handle_errors
def kill(ctx: click.Context, key: str, provider: str | None, file: str | None, reason: str, output: str) -> None:
    """Turn flag KEY off at its provider now, then abort any running ramp of it."""
    import getpass

    from orchestrator.errors import UnreachableError
    from orchestrator.flags.kill import kill as kill_flag
    from orchestrator.specs.flags import FlagRamp
    from orchestrator.specs.loader import load_file

    spec = None
    if file is not None:
        loaded = load_file(file, expect="FlagRamp")
        assert isinstance(loaded, FlagRamp)
        spec = loaded
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.client.temporal import connect_temporal

        client = None
        try:
            client = await connect_temporal(s)
        except UnreachableError:
            if spec is None:
                raise
            click.echo(f"warning: Temporal unreachable at {s.temporal_address}: turning the flag off only",
                       err=True)
        result = await kill_flag(
            key, client=client, spec=spec, provider=provider, kube_api_client=_kube_factory(s),
            reason=reason or "kill switch", by=getpass.getuser())
        if output == "json":
            emit_json({"flag": result.flag, "provider": result.provider, "workflow_id": result.workflow_id,
                       "ramp": result.ramp, "before": result.change.before.model_dump(),
                       "after": result.change.after.model_dump(), "notes": result.notes,
                       "confirmed_off_seconds": result.confirmed_off_seconds, "verification": result.verification})
        else:
            click.echo(f"{result.provider} flag {key} is off ({result.change.after.detail or 'variant at 0%'})")
            if result.confirmed_off_seconds is not None:
                click.echo(f"confirmed off {result.confirmed_off_seconds:.2f}s after the call")
            else:
                click.echo("NOT confirmed off: check the provider", err=True)
            for line in result.verification:
                click.echo(f"  {line}")
            click.echo(f"ramp: {result.ramp}" + (f" ({result.workflow_id})" if result.workflow_id else ""))
            for note in result.notes:
                click.echo(f"note: {note}")
        if client is None:
            return 3
        # A switch whose effect could not be confirmed is a failure the operator must see.
        return EXIT_OK if result.confirmed_off_seconds is not None else EXIT_FAILED

    finish(run(main()))


def _kube_factory(s: Settings) -> Any:
    def make() -> Any:
        from orchestrator.kube.client import load_api_client

        return load_api_client(s.kubeconfig, s.kube_context, s.kube_timeout)

    return make


__all__ = ["flag", "render"]
