"""``orchestrator chaos``: run, watch, abort and schedule chaos experiments; the janitor; GameDays.

Exit codes as every command: 0 the experiment completed and recovered (or the command did what was
asked), 1 breached, not recovered, aborted or refused, 2 invalid input, 3 a backend unreachable.
The commands parse and print; the work is in ``orchestrator.chaos`` (control, planning, janitor,
schedules), which the tests call directly too.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    emit_json,
    finish,
    handle_errors,
    output_option,
    run,
    settings,
)
from orchestrator.cli.follow import Follower, query_failure
from orchestrator.errors import RefusedError, SpecError
from orchestrator.redact import redact

if TYPE_CHECKING:
    # Temporal's client and the pydantic models load inside the commands, so ``chaos --help`` stays fast.
    from temporalio.client import Client

    from orchestrator.api.chaos import ChaosStatus, GameDayResult
    from orchestrator.chaos.objects import Objects
    from orchestrator.config import Settings
    from orchestrator.specs.chaos import ChaosExperiment
    from orchestrator.specs.policy import RailsPolicy


@click.group()
def chaos() -> None:
    """Chaos experiments with safety rails: run, abort (--all is the big red button), retry, schedule, janitor."""


def _load(file: str) -> ChaosExperiment:
    from orchestrator.specs.chaos import ChaosExperiment
    from orchestrator.specs.loader import load_file

    exp = load_file(file, expect="ChaosExperiment")
    assert isinstance(exp, ChaosExperiment)
    return exp


def _objects(s: Settings) -> Objects:
    from orchestrator.chaos.objects import Objects
    from orchestrator.kube.client import load_api_client

    return Objects(load_api_client(s.kubeconfig, s.kube_context, s.kube_timeout))


def _print_status(st: ChaosStatus, output: str) -> None:
    if output == "json":
        emit_json(st.model_dump(mode="json"))
        return
    if output == "markdown":
        click.echo(f"### Chaos experiment `{st.name}`: **{st.phase.value}**\n")
        click.echo(f"- target: `{st.namespace}`, fault `{st.fault}`, run `{st.run}`")
        click.echo(f"- reason: {st.reason or '-'}")
        for line in st.plan:
            click.echo(f"- plan: {line}")
        for c in st.checks:
            click.echo(f"- check `{c.check}`: {c.phase.value}: {c.reason}")
        return
    click.echo(f"{st.name} ({st.workflow_id}): {st.phase.value}" + (f": {st.reason}" if st.reason else ""))
    for line in st.plan:
        click.echo(f"  plan: {line}")
    for c in st.checks:
        click.echo(f"  check {c.check}: {c.phase.value} ({c.reason})")
    if st.recovered is not None:
        click.echo(f"  recovered: {'yes' if st.recovered else 'no'}")


def _exit_for(st: ChaosStatus) -> int:
    from orchestrator.api.chaos import ChaosPhase

    return EXIT_OK if st.phase is ChaosPhase.COMPLETED else EXIT_FAILED


async def _resolve_id(client: Client, name: str, namespace: str | None) -> str:
    """NAME with -n NS is ``chaos-NS-NAME``; a full workflow id is taken as is; else a running match."""
    from orchestrator.client import chaos as control

    if namespace:
        return f"chaos-{namespace}-{name}"
    running = await control.running(client)
    if name in running:
        return name
    matches = [w for w in running if w.endswith(f"-{name}")]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RefusedError(f"no running experiment named {name} (give --namespace for a finished one)")
    raise RefusedError(f"{name} is ambiguous: {', '.join(sorted(matches))}; give --namespace")


@chaos.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Resolve targets, check every rail and print the plan; touch nothing.")
@click.option("--wait/--no-wait", default=False, help="Follow the experiment and exit with its outcome.")
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None, envvar="ORCHESTRATOR_POLICY",
              help="With --dry-run: the rails policy file whose rails to check too (default $ORCHESTRATOR_POLICY).")
@output_option
@click.pass_context
@handle_errors
def run_cmd(ctx: click.Context, file: str, dry_run: bool, wait: bool, output: str, policy_path: str | None) -> None:
    """Run the experiment in FILE (or, with --dry-run, show what it would do)."""
    exp = _load(file)
    s = settings(ctx)
    rails_policy = None
    if dry_run and policy_path:
        from orchestrator.specs.policy import load_policy

        rails_policy = load_policy(policy_path)

    async def main() -> int:
        from orchestrator.client import chaos as control
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        if dry_run:
            return await _dry_run(s, client, exp, output, rails_policy)
        from orchestrator.api.chaos import ChaosInput
        from orchestrator.client.pollers import require_worker

        await require_worker(client, s, "nothing was started")
        handle = await control.start(client, ChaosInput(experiment=exp, source=file), s.task_queue)
        if not wait:
            if output == "json":
                emit_json({"workflow_id": handle.id})
            else:
                click.echo(handle.id)
            return EXIT_OK
        if output == "text":
            click.echo(f"started {handle.id}")
        st = await _follow(client, handle.id, output)
        _print_status(st, output)
        return _exit_for(st)

    finish(run(main()))


async def _dry_run(s: Settings, client: Client, exp: ChaosExperiment, output: str,
                   rails_policy: RailsPolicy | None = None) -> int:
    from datetime import UTC, datetime

    from orchestrator.activities.chaos import TemporalActiveWork, canary_workflow_id
    from orchestrator.chaos.planning import prepare
    from orchestrator.chaos.safety import ChaosPolicy
    from orchestrator.gates.prometheus import PrometheusProvider

    # The namespaces of the policy given on the command line, else of $ORCHESTRATOR_POLICY (or the older variables).
    policy = ChaosPolicy.from_policy(rails_policy) if rails_policy is not None else ChaosPolicy.from_env()
    objects, metrics, active = _objects(s), PrometheusProvider(s.prometheus), TemporalActiveWork(client)
    now = datetime.now(UTC)
    plan = await prepare(
        objects=objects, metrics=metrics, active=active, policy=policy, experiment=exp,
        run=f"{exp.metadata.name[:54]}-dryrun", now=now, workflow_id=None, canary_id=canary_workflow_id,
    )
    if rails_policy is not None:
        from orchestrator.rails.run import chaos_preflight

        await chaos_preflight(api_client=objects.api_client, metrics=metrics, active=active, chaos_policy=policy,
                              rails_policy=rails_policy, experiment=exp, plan=plan, workflow_id=None, now=now)
    # The run refuses a first round that injects nothing (a floor would be crossed): so does its dry run.
    refusal = plan.refusal()
    code = EXIT_OK if refusal is None else EXIT_FAILED
    if output == "json":
        emit_json({**plan.model_dump(mode="json"), "refused": refusal})
        return code
    t = plan.targets
    if refusal is None:
        click.echo(f"dry run of {exp.metadata.name}: every safety rail passed; nothing was changed")
    else:
        click.echo(f"dry run of {exp.metadata.name}: the run would be REFUSED: {refusal}; nothing was changed")
    not_ready = len(t.candidates) - len(t.ready)
    click.echo(f"targets: {len(t.chosen)} of {len(t.ready)} ready pod(s) matching {t.selector} in {t.namespace} "
               f"(seed {t.seed}): {', '.join(p.name for p in t.chosen) or '-'}"
               + (f"; {not_ready} more not ready (never picked)" if not_ready else ""))
    click.echo(f"blast radius: {plan.affected_pods} of {plan.total_pods} ready pods "
               f"(limit {exp.spec.blast_radius.max_pods_percent}% per workload and overall)")
    for line in plan.lines:
        click.echo(f"plan: {line}")
    for pod in plan.hits:
        click.echo(f"hits: {pod}" + (f" ({pod.workload})" if pod.workload else "") + ("" if pod.ready else
                                                                                     " (not ready)"))
    for obj in plan.touches:
        click.echo(f"touches: {obj}")
    if exp.spec.target.seed is None:
        click.echo("note: no target.seed in the spec, so a real run may pick other pods")
    if refusal is not None:
        click.echo(f"refused: {refusal}", err=True)
    return code


async def _follow(client: Client, wid: str, output: str) -> ChaosStatus:
    import asyncio

    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from orchestrator.api.chaos import ChaosStatus
    from orchestrator.cli import follow as follow_module

    handle = client.get_workflow_handle(wid, result_type=ChaosStatus)
    follower = Follower(wid, live=output == "text")
    result_task = asyncio.ensure_future(handle.result())
    while not result_task.done():
        try:
            st = await asyncio.wait_for(handle.query("status", result_type=ChaosStatus), follow_module.QUERY_TIMEOUT)
            follower.new_events(st, indent="  ")
        except (WorkflowQueryFailedError, RPCError, TimeoutError) as exc:
            follower.unreadable(query_failure(exc))
        await asyncio.wait([result_task], timeout=1.0)
    result: ChaosStatus = result_task.result()
    return result


@chaos.command()
@click.argument("name", required=False)
@click.option("--namespace", "-n", help="The experiment's target namespace.")
@click.option("--all", "abort_all", is_flag=True,
              help="The big red button: abort every running experiment and revert every fault now.")
@click.option("--reason", default="", help="Recorded in the experiment's events.")
@click.pass_context
@handle_errors
def abort(ctx: click.Context, name: str | None, namespace: str | None, abort_all: bool, reason: str) -> None:
    """Abort experiment NAME (it reverts at once), or with --all every experiment and every fault."""
    import getpass

    s = settings(ctx)
    if abort_all == (name is not None):
        raise SpecError(["<command line>:0: NAME: give NAME or --all"])

    async def main() -> int:
        from orchestrator.client import chaos as control
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        if abort_all:
            report = await control.abort_all(client, _objects(s), reason or "abort --all", getpass.getuser())
            for wid in report.aborted:
                click.echo(f"aborted {wid}")
            for line in report.reverted:
                click.echo(f"reverted {line}")
            for line in report.problems:
                click.echo(redact(f"could not revert: {line}"), err=True)
            for line in report.blind:
                click.echo(redact(f"could not look: {line}"), err=True)
            if not report.aborted and not report.reverted and report.clean:
                click.echo("nothing was running and no fault was in place")
            return EXIT_OK if report.clean else EXIT_FAILED
        assert name is not None
        return await _control(client, s, name, namespace, "abort", reason)

    finish(run(main()))


async def _control(client: Client, s: Settings, name: str, namespace: str | None, action: str,
                   reason: str = "") -> int:  # fmt: skip
    """Send ``action`` to experiment NAME through the bounded control path (a worker must be there to apply it)."""
    import getpass

    from orchestrator.client import chaos as control
    from orchestrator.client.pollers import bounded_control

    wid = await _resolve_id(client, name, namespace)
    answer = await bounded_control(
        client, s, wid, "experiment", action, control.control(client, wid, action, reason, getpass.getuser()),
        hint="; `orchestrator chaos abort --all` reverts every fault now, without a worker")
    click.echo(f"{wid}: {answer.message}")
    return EXIT_OK


@chaos.command()
@click.argument("name")
@click.option("--namespace", "-n", help="The experiment's target namespace.")
@click.pass_context
@handle_errors
def retry(ctx: click.Context, name: str, namespace: str | None) -> None:
    """Re-attempt a stuck revert of experiment NAME now (after fixing what made it fail)."""
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.client.temporal import connect_temporal

        return await _control(await connect_temporal(s), s, name, namespace, "retry")

    finish(run(main()))


@chaos.command()
@click.argument("name")
@click.option("--namespace", "-n", help="The experiment's target namespace.")
@output_option
@click.pass_context
@handle_errors
def status(ctx: click.Context, name: str, namespace: str | None, output: str) -> None:
    """Show where experiment NAME stands: phase, plan, checks."""
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.client import chaos as control
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        st = await control.status(client, await _resolve_id(client, name, namespace))
        _print_status(st, output)
        return EXIT_OK

    finish(run(main()))


@chaos.command("list")
@output_option
@click.pass_context
@handle_errors
def list_cmd(ctx: click.Context, output: str) -> None:
    """List running experiments, and the janitor schedule's latest runs."""
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.client import chaos as control
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        rows: list[dict[str, Any]] = []
        for wid in await control.running(client):
            try:
                st = await control.status(client, wid)
                rows.append({"workflow_id": wid, "phase": st.phase.value, "fault": st.fault,
                             "namespace": st.namespace})
            except Exception:
                rows.append({"workflow_id": wid, "phase": "unknown", "fault": "", "namespace": ""})
        from orchestrator.client import janitor as janitor_schedule

        janitor = await janitor_schedule.describe(client)
        if output == "json":
            emit_json({"experiments": rows, "janitor": _janitor_json(janitor)})
            return EXIT_OK
        if not rows:
            click.echo("no experiment is running")
        for r in rows:
            click.echo(f"{r['workflow_id']}  {r['phase']}  {r['fault']}")
        if janitor is None:
            click.echo("janitor: no schedule (a worker creates it on start)")
            return EXIT_OK
        nxt = janitor.next_run.isoformat(timespec="seconds") if janitor.next_run else "-"
        click.echo(f"janitor: schedule {janitor_schedule.SCHEDULE_ID} {janitor.every}"
                   f"{' (paused)' if janitor.paused else ''}, next run {nxt}")
        for jr in janitor.runs:
            what = jr.result.summary() if jr.result else jr.status
            click.echo(f"  {jr.started_at.isoformat(timespec='seconds')}  {jr.workflow_id}  {what}")
            for line in jr.result.blind if jr.result else []:
                click.echo(f"    could not look: {line}")
        return EXIT_OK

    finish(run(main()))


def _janitor_json(info: Any) -> dict[str, Any] | None:
    if info is None:
        return None
    return {
        "every": info.every, "paused": info.paused,
        "next_run": info.next_run.isoformat() if info.next_run else None,
        "runs": [{"started_at": r.started_at.isoformat(), "workflow_id": r.workflow_id, "status": r.status,
                  "result": r.result.model_dump(mode="json") if r.result else None} for r in info.runs],
    }


@chaos.command()
@click.option("--dry-run", is_flag=True, help="Show what would be reverted.")
@click.pass_context
@handle_errors
def janitor(ctx: click.Context, dry_run: bool) -> None:
    """Revert every fault whose expiry has passed, even if its workflow is gone."""
    from orchestrator.chaos.janitor import sweep_scoped

    report = sweep_scoped(_objects(settings(ctx)), dry_run=dry_run)
    for line in report.reverted:
        click.echo(f"reverted {line}" if not dry_run else line)
    for line in report.pending:
        click.echo(f"still running: {line}")
    for line in report.problems:
        click.echo(redact(f"could not revert: {line}"), err=True)
    for line in report.blind:
        click.echo(redact(f"could not look: {line}"), err=True)
    if not report.reverted:
        click.echo("no expired fault found")
    finish(EXIT_FAILED if report.problems else EXIT_OK)


@chaos.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--cron", help='Cron expression, e.g. "0 10 * * 1-5".')
@click.option("--every", type=float, help="Or a fixed interval in seconds.")
@click.pass_context
@handle_errors
def schedule(ctx: click.Context, file: str, cron: str | None, every: float | None) -> None:
    """Schedule the experiment in FILE (overlapping runs are skipped)."""
    exp = _load(file)
    s = settings(ctx)
    if (cron is None) == (every is None):
        raise SpecError(["<command line>:0: --cron: give exactly one of --cron or --every"])
    if every is not None and every <= 0:
        raise SpecError(["<command line>:0: --every: must be greater than 0"])

    async def main() -> int:
        from orchestrator.api.chaos import ChaosInput
        from orchestrator.client import chaos_schedules as schedules
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        sid = await schedules.create(client, ChaosInput(experiment=exp, source=file), s.task_queue, cron=cron,
                                     every=timedelta(seconds=every) if every else None)
        click.echo(sid)
        return EXIT_OK

    finish(run(main()))


@chaos.group()
def schedules() -> None:
    """List, pause, unpause and delete experiment schedules."""


@schedules.command("list")
@output_option
@click.pass_context
@handle_errors
def schedules_list(ctx: click.Context, output: str) -> None:
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.client import chaos_schedules as sched
        from orchestrator.client.temporal import connect_temporal

        items = await sched.list_schedules(await connect_temporal(s))
        if output == "json":
            emit_json([i.__dict__ for i in items])
        elif not items:
            click.echo("no experiment schedule")
        for i in items if output != "json" else []:
            nxt = i.next_runs[0].isoformat() if i.next_runs else "-"
            click.echo(f"{i.id}  {'paused' if i.paused else 'active'}  {i.spec}  next: {nxt}  runs: {i.recent_runs}")
        return EXIT_OK

    finish(run(main()))


def _schedule_action(action: str) -> click.Command:
    @click.command(name=action, help=f"{action.capitalize()} the schedule SCHEDULE_ID.")
    @click.argument("schedule_id")
    @click.pass_context
    @handle_errors
    def command(ctx: click.Context, schedule_id: str) -> None:
        s = settings(ctx)

        async def main() -> int:
            from orchestrator.client import chaos_schedules as sched
            from orchestrator.client.temporal import connect_temporal

            client = await connect_temporal(s)
            await getattr(sched, action)(client, schedule_id)
            click.echo(f"{schedule_id}: {action}d" if action != "unpause" else f"{schedule_id}: unpaused")
            return EXIT_OK

        finish(run(main()))

    return command


for _action in ("pause", "unpause", "delete"):
    schedules.add_command(_schedule_action(_action))


@chaos.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--wait/--no-wait", default=True, help="Follow the GameDay and exit with its outcome.")
@output_option
@click.pass_context
@handle_errors
def gameday(ctx: click.Context, file: str, wait: bool, output: str) -> None:
    """Run the GameDay in FILE: its experiments in order, stopping at the first that does not recover."""
    from orchestrator.api.chaos import ChaosInput, GameDayInput
    from orchestrator.specs.chaos import GameDay
    from orchestrator.specs.loader import load_file

    gd = load_file(file, expect="GameDay")
    assert isinstance(gd, GameDay)
    base = Path(file).parent
    inputs = [ChaosInput(experiment=_load(str(base / p)), source=str(base / p)) for p in gd.spec.experiments]
    s = settings(ctx)

    async def main() -> int:
        from orchestrator.api.chaos import GAMEDAY_TYPE, GameDayResult
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        inp = GameDayInput(name=gd.metadata.name, experiments=inputs,
                           recovery_wait_seconds=gd.spec.recovery_wait.total_seconds(),
                           pause_between_seconds=gd.spec.pause_between.total_seconds())
        from temporalio.exceptions import WorkflowAlreadyStartedError

        try:
            handle = await client.start_workflow(GAMEDAY_TYPE, inp, id=f"gameday-{gd.metadata.name}",
                                                 task_queue=s.task_queue, result_type=GameDayResult)
        except WorkflowAlreadyStartedError:
            raise RefusedError(f"GameDay {gd.metadata.name} is already running") from None
        if not wait:
            click.echo(handle.id)
            return EXIT_OK
        result: GameDayResult = await handle.result()
        _print_gameday(result, output)
        return EXIT_OK if result.passed else EXIT_FAILED

    finish(run(main()))


def _print_gameday(result: GameDayResult, output: str) -> None:
    if output == "json":
        emit_json(result.model_dump(mode="json"))
        return
    click.echo(f"GameDay {result.name}: {'passed' if result.passed else f'stopped at {result.stopped_at}'}")
    for st in result.results:
        click.echo(f"  {st.name}: {st.phase.value}" + (f" ({st.reason})" if st.reason else ""))
    for name in result.skipped:
        reason = result.skip_reasons.get(name)
        click.echo(f"  {name}: skipped" + (f" ({reason})" if reason else ""))
