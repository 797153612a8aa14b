"""``orchestrator sandbox up|down|status|env``: the local embedded default, no cluster needed.

``up`` also starts a worker and deploys the demo app ``demo/shop`` (what examples/sandbox/
targets), so a newcomer can run every example by hand right away.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from orchestrator.cli.common import emit_json, handle_errors, output_option, settings

state_dir_option = click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where the sandbox keeps its state (default: .sandbox, or ORCHESTRATOR_STATE_DIR).")


def _dir(ctx: click.Context, state_dir: Path | None) -> Path:
    return state_dir if state_dir is not None else Path(settings(ctx).state_dir)


@click.group()
def sandbox() -> None:
    """A local sandbox: Temporal, a Kubernetes API whose pods are local processes, traffic, Prometheus."""


@sandbox.command()
@state_dir_option
@click.option("--temporal-port", type=int, default=7233, show_default=True)
@click.option("--ui-port", type=int, default=8233, show_default=True)
@click.option("--api-port", type=int, default=6443, show_default=True)
@click.option("--prometheus-port", type=int, default=9090, show_default=True)
@click.option("--scrape-interval", type=click.FloatRange(2, 5), default=2.0, show_default=True)
@click.option("--worker/--no-worker", default=True, show_default=True,
              help="Also run a worker on the task queue `orchestrator`.")
@click.option("--demo-app/--no-demo-app", default=True, show_default=True,
              help="Deploy the demo app demo/shop (v1, 4 replicas) that examples/sandbox/ targets.")
@click.option("--clusters", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Independent clusters sandbox-1..N (fleet releases), each with its own Prometheus and worker.")
@output_option
@click.pass_context
@handle_errors
def up(ctx: click.Context, state_dir: Path | None, temporal_port: int, ui_port: int, api_port: int,
       prometheus_port: int, scrape_interval: float, worker: bool, demo_app: bool, output: str,
       clusters: int = 1) -> None:
    """Start the sandbox (all on 127.0.0.1) and print where each part listens."""
    from orchestrator.sandbox import manager

    where = _dir(ctx, state_dir)
    info = manager.up(where, temporal_port=temporal_port, ui_port=ui_port, api_port=api_port,
                      prometheus_port=prometheus_port, scrape_interval=scrape_interval, worker=worker,
                      clusters=clusters)
    if demo_app:
        from orchestrator.kube.client import load_api_client
        from orchestrator.sandbox.demo import deploy_app

        try:
            for kubeconfig in [c.kubeconfig for c in info.clusters] or [info.kubeconfig]:
                deploy_app(load_api_client(kubeconfig), info.flags_file)
        except BaseException:
            manager.down(where)
            raise
    if output == "json":
        emit_json(info.model_dump(mode="json"))
        return
    click.echo(f"sandbox up in {info.state_dir}")
    click.echo(f"  Temporal      {info.temporal_address}   UI {info.temporal_ui_url}")
    click.echo(f"  Kubernetes    {info.kube_api_url}   kubeconfig {info.kubeconfig}")
    click.echo(f"  Prometheus    {info.prometheus_url}")
    if worker:
        click.echo(f"  worker        task queue {info.task_queue}   log {Path(info.state_dir) / 'logs' / 'worker.log'}")
    for c in info.clusters:
        click.echo(f"  {c.name:<13} {c.kube_api_url}   Prometheus {c.prometheus_url}   worker queue {c.task_queue}")
    if demo_app:
        click.echo("  demo app      demo/shop v1, 4 replicas, steady load; flags in " + info.flags_file)
    click.echo("the CLI finds this sandbox by itself when no other cluster is configured; to be explicit:")
    click.echo(f'  eval "$(orchestrator sandbox env{_state_dir_arg(state_dir)})"')
    click.echo("then try: orchestrator canary run examples/sandbox/canary.yaml --wait")


def _state_dir_arg(state_dir: Path | None) -> str:
    return "" if state_dir is None else f" --state-dir {shlex.quote(str(state_dir))}"


@sandbox.command()
@state_dir_option
@click.pass_context
@handle_errors
def env(ctx: click.Context, state_dir: Path | None) -> None:
    """Print the exports that point the CLI at the running sandbox: eval "$(orchestrator sandbox env)"."""
    from orchestrator.errors import RefusedError
    from orchestrator.sandbox import manager

    where = _dir(ctx, state_dir)
    info = manager.read_info(where)
    if info is None:
        raise RefusedError(f"no sandbox is running in {where.resolve()}; start one with `orchestrator sandbox up`")
    for name, value in info.environment().items():
        click.echo(f"export {name}={shlex.quote(value)}")


@sandbox.command()
@state_dir_option
@click.pass_context
@handle_errors
def down(ctx: click.Context, state_dir: Path | None) -> None:
    """Stop every process `up` started (by recorded PID); remove nothing the user made."""
    from orchestrator.sandbox import manager

    stopped = manager.down(_dir(ctx, state_dir))
    click.echo("stopped: " + ", ".join(stopped) if stopped else "nothing was running")


@sandbox.command()
@state_dir_option
@output_option
@click.pass_context
@handle_errors
def status(ctx: click.Context, state_dir: Path | None, output: str) -> None:
    """List what runs and where."""
    from orchestrator.sandbox import manager

    st = manager.status(_dir(ctx, state_dir))
    if output == "json":
        emit_json(st.model_dump(mode="json"))
        return
    if not st.components:
        click.echo(f"no sandbox in {st.state_dir}")
        return
    click.echo(f"sandbox in {st.state_dir}: {'running' if st.running else 'partly down'}")
    for c in st.components:
        click.echo(f"  {c.name:<12} pid {c.pid:<8} {'alive' if c.alive else 'DEAD':<6} {c.url or c.address}")
    for t in st.traffic:
        weights = ", ".join(f"{k} {v:g}" for k, v in t.weights.items())
        click.echo(f"  traffic {t.namespace}/{t.app}: {weights}")
