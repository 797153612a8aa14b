"""``validate`` and ``schema``: spec files checked without touching any system."""

from __future__ import annotations

import json

import click

from orchestrator.cli.common import EXIT_INVALID, finish, handle_errors
from orchestrator.errors import SpecError


@click.command()
# Plain strings: the loader's bounded reader refuses a directory with the file:line form.
@click.argument("files", nargs=-1, required=True)
@handle_errors
def validate(files: tuple[str, ...]) -> None:
    """Check spec files; print each mistake as file:line: field: message (exit 2 if any)."""
    from orchestrator.specs.loader import load_file

    failed = False
    for path in files:
        try:
            spec = load_file(path)
        except SpecError as exc:
            failed = True
            for problem in exc.problems:
                click.echo(problem, err=True)
            continue
        click.echo(f"{path}: ok ({getattr(spec, 'kind', type(spec).__name__)})")
    if failed:
        finish(EXIT_INVALID)


@click.command()
@click.argument("kind")
@handle_errors
def schema(kind: str) -> None:
    """Print the JSON Schema of a spec KIND (CanaryRollout, FlagRamp, ChaosExperiment, GameDay, RailsPolicy),
    or of Result: the output of `canary run|status -o json`."""
    if kind == "Result":
        from orchestrator.cli.render import result_schema

        click.echo(json.dumps(result_schema(), indent=2))
        return
    from orchestrator.specs.loader import schema as get_schema

    click.echo(json.dumps(get_schema(kind), indent=2))
