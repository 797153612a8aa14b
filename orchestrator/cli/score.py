"""``orchestrator score [SERVICE]``: resilience scores from the run store, in one of four formats.

Reading the store needs no Temporal connection, so this command exits normally (no
``os._exit``) and can be driven by click's test runner. ``--format`` is a plain string
checked by the report module so that a bad value gives one line and exit 2, like an
unknown service, instead of click's multi-line usage error. A store that cannot be opened is
one line too: exit 2 for a path or URL that names no store, exit 3 for a database that does
not answer.

The command reads only the settings it uses (the store's location), inside its error handling: a
bad Temporal address or Prometheus timeout in the environment is none of its business, and a bad
``--db`` is one line. Every line it prints is redacted (``orchestrator.redact``).
"""

from __future__ import annotations

import os

import click

from orchestrator.config import Settings, db_path_from_env
from orchestrator.errors import OrchestratorError, SpecError
from orchestrator.redact import redact
from orchestrator.scoring.config import load_config
from orchestrator.scoring.report import FORMATS, render_report
from orchestrator.scoring.store import DATABASE_URL_ENV, RunStore, StorePathError, location_from


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
    try:
        settings = ctx.obj if isinstance(ctx.obj, Settings) else Settings(db_path=db_path_from_env())
        location = location_from(settings, db)
        if fmt not in FORMATS:
            raise SpecError([f"unknown format {fmt!r} (use one of: {', '.join(FORMATS)})"])
        config = load_config(config_path)
        # A report only reads: a store that does not exist yet is a wrong path, not one to create.
        with RunStore(location, create=False) as store:
            output = render_report(store, service, fmt, config=config)
    except SpecError as exc:
        click.echo(redact("; ".join(exc.problems)), err=True)
        ctx.exit(exc.exit_code)
    except StorePathError as exc:
        # The location is a setting like any other: name where it came from, ``file:line: field:``.
        click.echo(redact(f"{_store_origin(db)}: {exc}"), err=True)
        ctx.exit(exc.exit_code)
    except OrchestratorError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        ctx.exit(exc.exit_code)
    click.echo(output, nl=False)


def _store_origin(db: str | None) -> str:
    if db is not None:
        return "<command line>:0: --db"
    if os.environ.get(DATABASE_URL_ENV, "").strip():
        return f"<environment>:0: {DATABASE_URL_ENV}"
    return "<environment>:0: ORCHESTRATOR_DB"
