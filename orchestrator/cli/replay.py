"""``replay``: a spec's gates evaluated over Prometheus history, without touching Temporal or Kubernetes."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from orchestrator.cli.common import handle_errors, output_option, settings
from orchestrator.errors import SpecError


def _when(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise SpecError([f"{option}: {value!r} is not an ISO 8601 time like 2026-11-20T10:00Z"]) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--from", "start", required=True, help="Start of the window (ISO 8601, UTC unless given).")
@click.option("--to", "end", required=True, help="End of the window (ISO 8601).")
@click.option("--canary-selector", default=None,
              help='Label matchers for the canary side in this history, e.g. version="v2".')
@click.option("--control-selector", default=None,
              help='Label matchers for the control side, e.g. version="v1".')
@output_option
@click.pass_context
@handle_errors
def replay(ctx: click.Context, file: str, start: str, end: str, canary_selector: str | None,
           control_selector: str | None, output: str) -> None:
    """Evaluate FILE's checks at the times they would have run between --from and --to.

    Prints every look (value, verdict) and the decision the rollout would have taken, and when.
    Exit 0 whatever the decision; 2 for a bad spec or option, 3 when Prometheus is unreachable.
    """
    from orchestrator.errors import MetricError
    from orchestrator.gates.prometheus import PrometheusProvider
    from orchestrator.replay import RENDERERS
    from orchestrator.replay import replay as run_replay
    from orchestrator.specs.loader import load_file

    spec = load_file(file)
    s = settings(ctx)
    provider = PrometheusProvider(s.prometheus)
    provider.check_reachable()
    try:
        result = run_replay(spec, provider, _when(start, "--from"), _when(end, "--to"),
                            canary_selector=canary_selector, control_selector=control_selector)
    except MetricError as exc:
        if exc.retryable:
            raise
        raise SpecError([f"{file}: {exc}"]) from None
    click.echo(RENDERERS[output](result), nl=False)
