"""``calibrate``: how often FILE's judge checks roll back a good version, measured as A/A tests on the history.

Rules: the window and the query limit are checked as ``replay`` checks them, before anything is asked of
Prometheus (times between 1970 and 9000; ``--max-queries``, else ``ORCHESTRATOR_REPLAY_MAX_QUERIES``, else
10,000, on the calibration's own estimate: two range queries per count judge, more only for windows
longer than one answer holds); ``--splits`` from 1 to 100,000; bad values are one ``file:line: field:
message`` line, exit 2; an unreachable Prometheus is one line, exit 3.
"""

from __future__ import annotations

import re

import click

from orchestrator.cli.common import handle_errors, settings
from orchestrator.cli.replay import MAX_QUERIES_ENV, _limit, _when
from orchestrator.errors import SpecError

MAX_SPLITS = 100_000


def _count(text: str, option: str, least: int, most: int) -> int:
    if re.fullmatch(r"[0-9]{1,10}", text, flags=re.ASCII) is None or not least <= int(text) <= most:
        raise SpecError([f"<command line>:0: {option}: {text[:40]!r} is not a whole number from {least} to {most:,}"])
    return int(text)


@click.command()
@click.argument("file")
@click.option("--from", "start", required=True, help="Start of the history (ISO 8601, UTC unless given).")
@click.option("--to", "end", required=True, help="End of the history (ISO 8601).")
@click.option("--splits", default="200", show_default=True, metavar="N",
              help="A/A runs: stable pods split into pseudo-canary and control, at a seeded start.")
@click.option("--seed", default="0", show_default=True, metavar="N", help="Seed of the splits and starts.")
@click.option("--max-queries", default=None, metavar="N",
              help=f"Refuse a calibration estimated above N queries (default: {MAX_QUERIES_ENV}, else 10,000).")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="How to print the result.")
@click.pass_context
@handle_errors
def calibrate(ctx: click.Context, file: str, start: str, end: str, splits: str, seed: str, max_queries: str | None,
              output: str) -> None:
    """Measure how often FILE's judge checks roll back identical versions, on the stable's own history.

    Per judge check: the false-rollback rate of A/A splits with its 95 % interval, the dispersion and pod
    spread, and the smallest regression each step catches. Exit 0; 2 for a bad spec or option, 3 when
    Prometheus is unreachable.
    """
    from orchestrator.calibrate import calibrate as run_calibrate
    from orchestrator.calibrate import check_budget, to_json, to_text
    from orchestrator.errors import MetricError
    from orchestrator.gates.prometheus import PrometheusProvider
    from orchestrator.specs.canary import CanaryRollout
    from orchestrator.specs.files import shown
    from orchestrator.specs.loader import load_file

    begin, finish = _when(start, "--from"), _when(end, "--to")
    if finish <= begin:
        raise SpecError([f"<command line>:0: --to: {end!r} is not after --from {start!r}"])
    runs = _count(splits, "--splits", 1, MAX_SPLITS)
    seeded = _count(seed, "--seed", 0, 10**9)
    limit = _limit(max_queries)
    spec = load_file(file)
    if not isinstance(spec, CanaryRollout):
        raise SpecError([f"{shown(file)}:0: kind: calibrate takes a CanaryRollout, not {getattr(spec, 'kind', '?')}"])
    try:
        check_budget(spec, begin, finish, limit)  # refused here, before Prometheus is asked anything
        provider = PrometheusProvider(settings(ctx).prometheus)
        provider.check_reachable()
        result = run_calibrate(spec, provider, begin, finish, splits=runs, seed=seeded, max_queries=limit)
    except MetricError as exc:
        if exc.retryable:
            raise
        raise SpecError([f"{shown(file)}:0: calibrate: {exc}"]) from None
    click.echo(to_json(result) if output == "json" else to_text(result), nl=output == "json")
