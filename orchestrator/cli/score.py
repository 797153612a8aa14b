"""``orchestrator score [SERVICE]``: resilience scores from the run store, in one of four formats.

Reading the store needs no Temporal connection, so this command exits normally (no
``os._exit``) and can be driven by click's test runner. ``--format`` is a plain string
checked by the report module so that a bad value gives one line and exit 2, like an
unknown service, instead of click's multi-line usage error. A store that cannot be opened is
one line too: exit 2 for a path or URL that names no store, exit 3 for a database that does
not answer.
"""

from __future__ import annotations

import click

from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.scoring.config import load_config
from orchestrator.scoring.report import FORMATS, render_report
from orchestrator.scoring.store import RunStore, location_from


@click.command("score")
@click.argument("service", required=False)
@click.option("--format", "fmt", default="text", show_default=True, metavar="|".join(FORMATS), help="Report format.")
@click.option(
    "--db", "db", metavar="PATH|URL",
    help="Run store: a SQLite path or a database URL (default: ORCHESTRATOR_DATABASE_URL, else ORCHESTRATOR_DB).",
)
@click.option(
    "--config", "config_path", metavar="FILE",
    help="Scoring config: other factor weights (default: ORCHESTRATOR_SCORING_CONFIG, else the runbook's).",
)
@click.pass_context
def score(ctx: click.Context, service: str | None, fmt: str, db: str | None, config_path: str | None) -> None:
    """Resilience score of SERVICE (namespace/app), or of every service in the store."""
    settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings.from_env()
    location = location_from(settings, db)
    try:
        if fmt not in FORMATS:
            raise SpecError([f"unknown format {fmt!r} (use one of: {', '.join(FORMATS)})"])
        config = load_config(config_path)
        # A report only reads: a store that does not exist yet is a wrong path, not one to create.
        with RunStore(location, create=False) as store:
            output = render_report(store, service, fmt, config=config)
    except SpecError as exc:
        click.echo("; ".join(exc.problems), err=True)
        ctx.exit(exc.exit_code)
    except OrchestratorError as exc:
        click.echo(f"error: {exc}", err=True)
        ctx.exit(exc.exit_code)
    click.echo(output, nl=False)
