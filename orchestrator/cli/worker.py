"""``worker``: run the Temporal worker that does the work."""

from __future__ import annotations

import click

from orchestrator.cli.common import handle_errors, run, settings


@click.command()
@click.option("--health-port", type=int, envvar="ORCHESTRATOR_HEALTH_PORT", default=None,
              help="Serve /healthz, /readyz and /metrics on this port.")
@click.option("--sdk-metrics-port", type=int, envvar="ORCHESTRATOR_SDK_METRICS_PORT", default=None,
              help="Serve the Temporal SDK's own worker metrics (temporal_*) on this port.")
@click.option("--log-format", type=click.Choice(["text", "json"]), envvar="ORCHESTRATOR_LOG_FORMAT",
              default="text", show_default=True)
@click.option("--log-level", default="INFO", show_default=True)
@click.pass_context
@handle_errors
def worker(
    ctx: click.Context, health_port: int | None, sdk_metrics_port: int | None, log_format: str, log_level: str
) -> None:
    """Run the worker (graceful shutdown on SIGTERM/SIGINT)."""
    import logging

    try:
        from orchestrator.logs import configure_logging

        configure_logging(log_format, log_level)
    except ImportError:
        logging.basicConfig(level=log_level)
    from orchestrator.worker import run_worker

    s = settings(ctx)
    if sdk_metrics_port is not None:
        import os

        from orchestrator.telemetry import install_sdk_metrics

        # Before connecting: the client takes the default runtime, whose core then serves the metrics.
        host = os.environ.get("ORCHESTRATOR_HEALTH_HOST") or "127.0.0.1"
        install_sdk_metrics(f"{host}:{sdk_metrics_port}")

    async def main() -> None:
        from orchestrator.client.temporal import connect_temporal

        client = await connect_temporal(s)
        await run_worker(client, s, health_port)

    run(main())
