"""``orchestrator sandbox up|down|status``: the local embedded default, no cluster needed."""

from __future__ import annotations

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
@output_option
@click.pass_context
@handle_errors
def up(ctx: click.Context, state_dir: Path | None, temporal_port: int, ui_port: int, api_port: int,
       prometheus_port: int, scrape_interval: float, output: str) -> None:
    """Start the sandbox (all on 127.0.0.1) and print where each part listens."""
    from orchestrator.sandbox import manager

    info = manager.up(_dir(ctx, state_dir), temporal_port=temporal_port, ui_port=ui_port, api_port=api_port,
                      prometheus_port=prometheus_port, scrape_interval=scrape_interval)
    if output == "json":
        emit_json(info.model_dump(mode="json"))
        return
    click.echo(f"sandbox up in {info.state_dir}")
    click.echo(f"  Temporal      {info.temporal_address}   UI {info.temporal_ui_url}")
    click.echo(f"  Kubernetes    {info.kube_api_url}   kubeconfig {info.kubeconfig}")
    click.echo(f"  Prometheus    {info.prometheus_url}")
    click.echo("use it with:")
    click.echo(f"  export ORCHESTRATOR_KUBECONFIG={info.kubeconfig} ORCHESTRATOR_PROMETHEUS_URL={info.prometheus_url}"
               f" ORCHESTRATOR_TEMPORAL_ADDRESS={info.temporal_address}")


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
