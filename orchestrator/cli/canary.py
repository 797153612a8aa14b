"""``orchestrator canary``: start, watch and steer canary rollouts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli import follow as follow_module
from orchestrator.cli import rails as rails_cli
from orchestrator.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
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
from orchestrator.errors import RefusedError, SpecError

if TYPE_CHECKING:
    # Temporal's client and the pydantic models load inside the commands, so ``canary --help`` stays fast.
    from temporalio.client import Client, WorkflowHandle

    from orchestrator.api.canary import CanaryStatus
    from orchestrator.config import Settings
    from orchestrator.specs.canary import CanaryRollout


@click.group()
def canary() -> None:
    """Canary rollouts: run, status, pause, resume, promote, abort, approve, retry, list."""


def workflow_id_for(name: str, namespace: str) -> str:
    from workflows.canary import workflow_id

    if name.startswith("canary-"):
        return name
    if "/" in name:
        ns, _, deployment = name.partition("/")
        return workflow_id(ns, deployment)
    return workflow_id(namespace, name)


def ui_link(s: Settings, workflow_id: str) -> str | None:
    import os

    base = os.environ.get("ORCHESTRATOR_TEMPORAL_UI")
    if not base:
        return None
    return f"{base.rstrip('/')}/namespaces/{s.temporal_namespace}/workflows/{workflow_id}"


def preflight(s: Settings, rollout: CanaryRollout, path: str) -> None:
    """Fail fast, before anything starts: Kubernetes and Prometheus reachable, the target exists."""
    from orchestrator.errors import NotFoundError
    from orchestrator.kube.client import load_api_client
    from orchestrator.kube.workloads import Workloads

    api = load_api_client(s.kubeconfig, s.kube_context, s.kube_timeout)
    target = rollout.spec.target
    try:
        Workloads(api).snapshot(target.namespace, target.deployment)
    except NotFoundError:
        from orchestrator.specs.loader import line_of

        line = line_of(path, ("spec", "target", "deployment"))
        raise SpecError(
            [f"{path}:{line}: spec.target.deployment: Deployment {target.namespace}/{target.deployment} not found"]
        ) from None
    if rollout.spec.all_checks():
        from orchestrator.gates.prometheus import PrometheusProvider

        PrometheusProvider(s.prometheus).check_reachable()
    judge_preflight(s, rollout, path, sized=True)


PLAN_WINDOW = timedelta(minutes=10)


def judge_preflight(s: Settings, rollout: CanaryRollout, path: str, *, sized: bool) -> None:
    """Know before you start: warn of each judged step that cannot decide at the current traffic in its time
    (``judge_plan.preflight``, on the stable's last ten minutes), and refuse the run with ``strictPlan: true``.

    ``sized`` False (``--no-preflight``, e.g. a CI machine that cannot reach Prometheus): nothing is read, the
    run says the steps were not sized, and a strict plan is refused, since it cannot be shown to hold.
    """
    from orchestrator.errors import MetricError

    checks = rollout.spec.all_checks()
    if not any(c.judge is not None for c in checks):
        return
    strict = rollout.spec.strict_plan
    lines: list[str] = []
    unsized = "" if sized else "--no-preflight: Prometheus was not read"
    if sized:
        from orchestrator.gates.counts import service_rates, service_tail
        from orchestrator.gates.judge import alpha_per_check, rollout_alpha
        from orchestrator.gates.judge_plan import preflight as plan_preflight
        from orchestrator.gates.prometheus import PrometheusProvider

        prom = PrometheusProvider(s.prometheus)
        variables = {"namespace": rollout.spec.target.namespace, "app": rollout.spec.target.deployment}
        now = datetime.now(UTC)
        bound, n = rollout_alpha(checks)
        try:
            rates = {c.name: service_rates(prom, c, variables, now, PLAN_WINDOW)
                     for c in checks if c.judge and c.judge.errors}  # fmt: skip
            tails = {c.name: service_tail(prom, c, variables, now, PLAN_WINDOW)
                     for c in checks if c.judge and c.judge.latency}  # fmt: skip
            lines = plan_preflight(rollout, rates, alpha_of={c.name: alpha_per_check(bound, n) for c in checks},
                                   tails=tails)  # fmt: skip
        except MetricError as exc:
            unsized = f"the stable's traffic could not be read ({exc})"
    if unsized:
        click.echo(f"{path}: warning: pre-flight: judged steps not sized against the current traffic: {unsized}",
                   err=True)  # fmt: skip
        if strict:
            raise RefusedError(f"{path}: strictPlan: true, and the judged steps could not be sized: {unsized}; "
                               "nothing was started")
        return
    for line in lines:
        click.echo(f"{path}: warning: pre-flight: {line}", err=True)
    if lines and strict:
        raise RefusedError(f"{path}: strictPlan: true refuses {len(lines)} judged step(s) that cannot decide at the "
                           "current traffic within their time (see the warnings above); nothing was started")


@canary.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--image", help="The new image (overrides spec.change.image).")
@click.option("--wait/--no-wait", default=False, help="Follow the rollout and exit with its outcome.")
@click.option("--timeout", type=SECONDS, default=None, help="With --wait: give up waiting after SECONDS (exit 4).")
@click.option("--exit-on-pause", is_flag=True, help="With --wait: exit 4 when the rollout waits for approval.")
@click.option("--preflight/--no-preflight", default=True, show_default=True,
              help="Check Kubernetes, Prometheus and the target before starting.")
@click.option("--dry-run", is_flag=True, help="Print every rail's verdict and start nothing (exit 1 if refused).")
@rails_cli.policy_option
@output_option
@click.pass_context
@handle_errors
def run_cmd(ctx: click.Context, file: str, image: str | None, wait: bool, timeout: float | None,
            exit_on_pause: bool, preflight: bool, output: str, dry_run: bool = False,
            policy_path: str | None = None) -> None:
    """Start a canary rollout of FILE; with --wait, follow it and exit 0 promoted / 1 rolled back."""
    from orchestrator.specs.canary import CanaryRollout, Change
    from orchestrator.specs.loader import load_file

    rollout = load_file(file, expect="CanaryRollout")
    assert isinstance(rollout, CanaryRollout)
    for warning in rollout.spec.warnings():  # e.g. weights the declared replicas cannot run
        click.echo(f"{file}: warning: {warning}", err=True)
    if image is not None:
        try:
            Change(image=image)
        except Exception:
            raise SpecError([f"<command line>:0: --image: {image!r} is not a valid image reference"]) from None
    if not (image or rollout.spec.change.image or rollout.spec.change.env):
        raise SpecError([f"{file}:0: spec.change: nothing changes: give --image or spec.change.image/env"])
    s = settings(ctx)
    if preflight:
        globals()["preflight"](s, rollout, file)
    else:
        judge_preflight(s, rollout, file, sized=False)
    if dry_run:
        finish(run(_dry_run(s, rollout, policy_path, output)))

    async def main() -> int:
        from orchestrator.client import canary as canary_client
        from orchestrator.client.pollers import require_worker
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        await require_worker(client, s, "nothing was started")
        handle = await canary_client.start(client, s.task_queue, rollout, image)
        wid = handle.id
        if not wait:
            if output == "json":
                emit_json({"workflow_id": wid, "run_id": handle.result_run_id})
            else:
                click.echo(wid)
            return EXIT_OK
        return await follow(client, handle, output, timeout, exit_on_pause, s)

    finish(run(main()))


async def _dry_run(s: Settings, rollout: CanaryRollout, policy_path: str | None, output: str) -> int:
    from orchestrator.rails.models import RailsRequest
    from orchestrator.specs.policy import policy_from_env

    policy = policy_from_env(policy_path)
    report = await rails_cli.check(s, RailsRequest(kind="canary", spec=rollout), policy)
    rails_cli.print_report(report, output, policy)
    return rails_cli.report_exit(report)


async def follow(client: Client, handle: WorkflowHandle[Any, Any], output: str, timeout: float | None,
                 exit_on_pause: bool, s: Settings) -> int:
    import asyncio

    from orchestrator.api.canary import FINAL_PHASES, Phase
    from orchestrator.cli.render import gate_line, render

    deadline = None if timeout is None else time.monotonic() + timeout
    seen_gates: dict[str, int] = {}
    live = output == "text"
    follower = Follower(handle.id, live=live)
    status: CanaryStatus | None = None
    while True:
        status, why = await read_status(handle)
        if status is None:
            follower.unreadable(why)
        else:
            follower.new_events(status)
        if status is not None and live:
            for gate in status.gates:
                if seen_gates.get(gate.check) != gate.measurements:
                    seen_gates[gate.check] = gate.measurements
                    click.echo(f"         gate {gate_line(gate)}")
        if status is not None and status.phase in FINAL_PHASES:
            break
        if status is None and await closed(handle):
            fail(f"error: workflow {handle.id} ended without a status", EXIT_FAILED)
        if exit_on_pause and status is not None and status.phase == Phase.WAITING_APPROVAL:
            click.echo(f"waiting for {status.waiting_for}; approve with: orchestrator canary approve {handle.id}")
            return EXIT_PENDING
        if deadline is not None and time.monotonic() > deadline:
            click.echo(f"still in progress after {timeout:g}s (the rollout goes on): {handle.id}")
            return EXIT_PENDING
        await asyncio.sleep(1.0)
    if not live:
        click.echo(render(status, output, ui_link(s, handle.id)))
    else:
        click.echo(f"result: {status.phase.value}" + (f" — {status.reason}" if status.reason else ""))
    return EXIT_OK if status.phase == Phase.PROMOTED else EXIT_FAILED


async def query_status(handle: WorkflowHandle[Any, Any]) -> CanaryStatus | None:
    """The live status; for a finished rollout, its result (queries need a worker, results do not)."""
    return (await read_status(handle))[0]


async def read_status(handle: WorkflowHandle[Any, Any]) -> tuple[CanaryStatus | None, str]:
    """``query_status`` and, when there is none, why (for the follower's notice)."""
    import asyncio

    from temporalio.client import WorkflowExecutionStatus, WorkflowQueryFailedError
    from temporalio.service import RPCError

    from orchestrator.api.canary import CanaryStatus
    from orchestrator.client.temporal import last_task_failure
    from workflows.canary import CanaryWorkflow

    try:
        desc = await handle.describe()
    except RPCError as exc:
        return None, query_failure(exc)
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        result = await handle.result()
        return (result if isinstance(result, CanaryStatus) else CanaryStatus.model_validate(result)), ""
    try:
        queried = await asyncio.wait_for(handle.query(CanaryWorkflow.status), follow_module.QUERY_TIMEOUT)
        return with_live_looks(queried, desc.raw_description.pending_activities), ""
    except (WorkflowQueryFailedError, RPCError, TimeoutError) as exc:
        why = query_failure(exc)
    failed = await last_task_failure(handle)
    return None, (f"its workflow task fails: {failed}" if failed else why)


def with_live_looks(status: CanaryStatus, pending: Any) -> CanaryStatus:
    """``status`` with the gates a running watch has looked at since it last returned to the workflow.

    The workflow hears of a watch's looks when the watch returns (a decision, the step's end, a
    hand-over); until then its latest state is the pending activity's heartbeat details.
    """
    from temporalio.contrib.pydantic import pydantic_data_converter

    from orchestrator.gates.watch_fold import WatchState
    from workflows.core_watch import WATCH

    live = {}
    for act in pending:
        if act.activity_type.name != WATCH or not act.heartbeat_details.payloads:
            continue
        try:
            details = pydantic_data_converter.payload_converter.from_payloads(list(act.heartbeat_details.payloads))
            live.update(WatchState.model_validate(details[0]).checks)
        except (ValueError, TypeError, IndexError):
            continue  # details of another version: the workflow's own view is shown
    if not live:
        return status
    gates = [live[g.check] if g.check in live and live[g.check].measurements >= g.measurements else g
             for g in status.gates]
    known = {g.check for g in status.gates}
    return status.model_copy(update={"gates": gates + [s for name, s in live.items() if name not in known]})


async def exists(handle: WorkflowHandle[Any, Any]) -> bool:
    from temporalio.service import RPCError, RPCStatusCode

    try:
        await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def closed(handle: WorkflowHandle[Any, Any]) -> bool:
    from temporalio.client import WorkflowExecutionStatus

    desc = await handle.describe()
    return desc.status not in (None, WorkflowExecutionStatus.RUNNING)


name_argument = click.argument("name")
namespace_option = click.option("--namespace", "-n", default="default", show_default=True,
                                help="Namespace of the target when NAME is a bare Deployment name.")


@canary.command()
@name_argument
@namespace_option
@click.option("--watch", "-w", is_flag=True, help="Keep printing until the rollout ends.")
@output_option
@click.pass_context
@handle_errors
def status(ctx: click.Context, name: str, namespace: str, watch: bool, output: str) -> None:
    """Show a rollout: NAME is NAMESPACE/DEPLOYMENT, a Deployment with -n, or a workflow id."""
    from orchestrator.cli.render import render
    from orchestrator.client.temporal import connect_temporal

    s = settings(ctx)

    async def main() -> int:
        client = await connect_temporal(s)
        handle = client.get_workflow_handle(workflow_id_for(name, namespace))
        if watch:
            return await follow(client, handle, output, None, False, s)
        st, why = await read_status(handle)
        if st is None and not await exists(handle):
            raise RefusedError(f"no rollout found for {name} (workflow {handle.id})")
        if st is None:
            raise RefusedError(f"rollout {handle.id} exists but its status cannot be read: {why}")
        click.echo(render(st, output, ui_link(s, handle.id)))
        return EXIT_OK

    finish(run(main()))


def _control(update: str, help_text: str) -> click.Command:
    @click.command(name=update, help=help_text)
    @name_argument
    @namespace_option
    @click.option("--reason", default="", help="Recorded in the rollout's events.")
    @click.pass_context
    @handle_errors
    def command(ctx: click.Context, name: str, namespace: str, reason: str) -> None:
        from orchestrator.client.pollers import control

        s = settings(ctx)
        click.echo(run(control(s, "rollout", workflow_id_for(name, namespace), update, reason)))
        finish(EXIT_OK)

    return command


for _name, _help in (
    ("pause", "Hold the rollout before its next step."),
    ("resume", "Continue a paused rollout."),
    ("promote", "Skip the remaining steps and promote now."),
    ("abort", "Roll back now."),
    ("approve", "Approve a step waiting for manual approval."),
    ("retry", "Re-attempt a stuck rollback step now (after fixing what made it fail)."),
):
    canary.add_command(_control(_name, _help))


@canary.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include finished rollouts.")
@output_option
@click.pass_context
@handle_errors
def list_cmd(ctx: click.Context, show_all: bool, output: str) -> None:
    """List canary rollouts (running ones by default)."""
    from orchestrator.client.temporal import list_runs

    s = settings(ctx)
    print_runs(run(list_runs(s, "CanaryRollout", show_all)), output, "canary rollouts", show_all)
    finish(EXIT_OK)


@canary.command("plan")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--window", default="10m", show_default=True, help="How far back to measure the current traffic.")
@click.option("--at", "at_text", default=None, help="Measure the traffic at this ISO time instead of now.")
@output_option
@click.pass_context
@handle_errors
def plan_cmd(ctx: click.Context, file: str, window: str, at_text: str | None, output: str) -> None:
    """Per analysis step of FILE: how long it must run to catch its judge's tolerance with 95 % probability."""
    from datetime import UTC, datetime

    from orchestrator.gates.counts import service_rates, service_tail
    from orchestrator.gates.judge import alpha_per_check, rollout_alpha
    from orchestrator.gates.judge_plan import plan
    from orchestrator.gates.prometheus import PrometheusProvider
    from orchestrator.specs.canary import CanaryRollout
    from orchestrator.specs.duration import parse_duration
    from orchestrator.specs.loader import load_file

    rollout = load_file(file, expect="CanaryRollout")
    assert isinstance(rollout, CanaryRollout)
    try:
        span = parse_duration(window)
        now = datetime.fromisoformat(at_text.replace("Z", "+00:00")) if at_text else datetime.now(UTC)
    except ValueError as exc:
        raise SpecError([f"<command line>:0: --window/--at: {exc}"]) from None
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    prom = PrometheusProvider(settings(ctx).prometheus)
    prom.check_reachable()
    checks = rollout.spec.all_checks()
    bound, n = rollout_alpha(checks)
    variables = {"namespace": rollout.spec.target.namespace, "app": rollout.spec.target.deployment}
    rates = {c.name: service_rates(prom, c, variables, now, span) for c in checks if c.judge and c.judge.errors}
    tails = {c.name: service_tail(prom, c, variables, now, span) for c in checks if c.judge and c.judge.latency}
    plans = plan(rollout, rates, alpha_of={c.name: alpha_per_check(bound, n) for c in checks}, tails=tails)
    if output == "json":
        emit_json([{"step": p.step, "weight": p.weight, "check": p.check, "duration_seconds": p.duration,
                    "needed_seconds": p.sizing.seconds, "enough": p.enough, "canary_rps": p.sizing.canary_rps,
                    "control_rps": p.sizing.control_rps, "event_rate": p.sizing.error_rate, "events": p.events,
                    "ratio": p.sizing.ratio} for p in plans])
    elif not plans:
        click.echo("no count or latency judge at a percentage weight in this rollout: nothing to size")
    else:
        click.echo(f"traffic measured over the last {window}; alpha {bound * 100:g} % per rollout over {n} judge "
                   f"check(s); detection is simulated with the judge's own arithmetic")
        for p in plans:
            click.echo(p.line())
    finish(EXIT_OK)


__all__ = ["EXIT_INVALID", "canary"]
