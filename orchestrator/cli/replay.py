"""``replay``: a spec's gates evaluated over Prometheus history, without touching Temporal or Kubernetes.

Rules: the window and the query limit are checked before anything is asked of Prometheus (times
between 1970 and 9000, so no instant of the simulation can overflow; at most ``--max-queries``
queries by the replay's estimate, default ``ORCHESTRATOR_REPLAY_MAX_QUERIES``, else 10,000); bad
values are one ``file:line: field: message`` line, exit 2. Output is streamed as the replay runs.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

import click

from orchestrator.cli.common import handle_errors, output_option, settings
from orchestrator.errors import SpecError

MAX_QUERIES_ENV = "ORCHESTRATOR_REPLAY_MAX_QUERIES"
# Prometheus' timestamps start at the epoch; a simulation runs at most a few hundred years past --to
# (100 steps of at most a year each), so 9000 keeps every instant far from datetime's year 9999.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
LIMIT_CAP = 1_000_000_000


def _when(value: str, option: str) -> datetime:
    where = f"<command line>:0: {option}:"
    try:
        parsed = datetime.fromisoformat(value)
        parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
        parsed = parsed.astimezone(UTC)
    except ValueError:
        raise SpecError([f"{where} {value!r} is not an ISO 8601 time like 2026-11-20T10:00Z"]) from None
    except OverflowError:
        parsed = EARLIEST.replace(year=1)  # before the epoch once converted to UTC
    if not EARLIEST <= parsed < LATEST:
        raise SpecError([f"{where} {value!r} is outside {EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d}"])
    return parsed


def _limit(option: str | None) -> int:
    from orchestrator.replay import DEFAULT_MAX_QUERIES

    if option is not None:
        where, text = "<command line>:0: --max-queries:", option
    elif os.environ.get(MAX_QUERIES_ENV, "").strip():
        where, text = f"<environment>:0: {MAX_QUERIES_ENV}:", os.environ[MAX_QUERIES_ENV].strip()
    else:
        return DEFAULT_MAX_QUERIES
    if re.fullmatch(r"[0-9]{1,10}", text, flags=re.ASCII) is None or not 1 <= int(text) <= LIMIT_CAP:
        raise SpecError([f"{where} {text[:40]!r} is not a whole number of queries from 1 to {LIMIT_CAP:,}"])
    return int(text)


@click.command()
@click.argument("file")
@click.option("--from", "start", required=True, help="Start of the window (ISO 8601, UTC unless given).")
@click.option("--to", "end", required=True, help="End of the window (ISO 8601).")
@click.option("--canary-selector", default=None,
              help='Label matchers for the canary side in this history, e.g. version="v2".')
@click.option("--control-selector", default=None,
              help='Label matchers for the control side, e.g. version="v1".')
@click.option("--max-queries", default=None, metavar="N",
              help=f"Refuse a replay estimated above N queries (default: {MAX_QUERIES_ENV}, else 10,000).")
@output_option
@click.pass_context
@handle_errors
def replay(ctx: click.Context, file: str, start: str, end: str, canary_selector: str | None,
           control_selector: str | None, max_queries: str | None, output: str) -> None:
    """Evaluate FILE's checks at the times they would have run between --from and --to.

    Prints every look (value, verdict) and the decision the rollout would have taken, and when.
    Exit 0 whatever the decision; 2 for a bad spec or option, 3 when Prometheus is unreachable.
    """
    from orchestrator.errors import MetricError
    from orchestrator.gates.prometheus import PrometheusProvider
    from orchestrator.replay import Decision, Replay, check_budget, stream_writer, validate_selector
    from orchestrator.replay import replay as run_replay
    from orchestrator.specs.canary import CanaryRollout
    from orchestrator.specs.files import shown
    from orchestrator.specs.loader import load_file

    begin, finish = _when(start, "--from"), _when(end, "--to")
    if finish <= begin:
        raise SpecError([f"<command line>:0: --to: {end!r} is not after --from {start!r}"])
    limit = _limit(max_queries)
    spec = load_file(file)
    if not isinstance(spec, CanaryRollout):
        raise SpecError([f"{shown(file)}:0: kind: replay takes a CanaryRollout, not {getattr(spec, 'kind', '?')}"])
    header = Replay(name=spec.metadata.name, kind=spec.kind, start=begin, end=finish,
                    decision=Decision(action="running", at=None, reason=""))
    try:
        for option, selector in (("--canary-selector", canary_selector), ("--control-selector", control_selector)):
            try:
                if selector is not None:
                    validate_selector(selector)
            except MetricError as exc:
                raise SpecError([f"<command line>:0: {option}: {exc}"]) from None
        # Estimated and refused here, before Prometheus is asked anything.
        check_budget(spec, begin, finish, limit)
        provider = PrometheusProvider(settings(ctx).prometheus)
        provider.check_reachable()
        with stream_writer(output, lambda text: click.echo(text, nl=False), header) as writer:
            result = run_replay(spec, provider, begin, finish, canary_selector=canary_selector,
                                control_selector=control_selector, max_queries=limit, sink=writer)
            writer.finish(result)
    except MetricError as exc:
        if exc.retryable:
            raise
        raise SpecError([f"{shown(file)}:0: replay: {exc}"]) from None
