"""``import``: other tools' analysis definitions converted into this project's checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from orchestrator.cli.common import EXIT_FAILED, EXIT_INVALID, fail, finish, handle_errors
from orchestrator.errors import SpecError


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (queries) as literal blocks, as people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError([f"{option}: {item!r} is not NAME=VALUE"])
        out[name] = value
    return out


@click.group(name="import")
def import_() -> None:
    """Convert other tools' analysis definitions into checks."""


@import_.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--var", "variables", multiple=True, metavar="ARG=VARIABLE",
              help="Map {{args.ARG}} to a template variable (namespace, app, image, version, target).")
@click.option("--set", "values", multiple=True, metavar="ARG=VALUE", help="Give {{args.ARG}} a literal value.")
@handle_errors
def argo(files: tuple[str, ...], variables: tuple[str, ...], values: tuple[str, ...]) -> None:
    """Convert Argo Rollouts AnalysisTemplates / ClusterAnalysisTemplates (Prometheus provider).

    Prints the converted checks as YAML (validated) and, on stderr, one line per thing that could
    not be converted, with the reason. Exit 0 when everything converted, 1 when something did not,
    2 for unreadable input.
    """
    from orchestrator.importers.argo import convert_documents
    from orchestrator.specs.checks import TEMPLATE_VARIABLES

    mapped = _pairs(variables, "--var")
    for arg, var in mapped.items():
        if var not in TEMPLATE_VARIABLES - {"track", "track_selector", "variant"}:
            raise SpecError([f"--var {arg}={var}: {var!r} is not a template variable "
                             "(namespace, app, image, version, target)"])
    docs: list[tuple[str, Any]] = []
    for path in files:
        try:
            text = Path(path).read_text()
            docs += [(path, doc) for doc in yaml.safe_load_all(text)]
        except OSError as exc:
            fail(f"{path}: {exc.strerror or exc}", EXIT_INVALID)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            fail(f"{path}{line}: not YAML: {getattr(exc, 'problem', None) or exc}", EXIT_INVALID)
    converted = convert_documents(docs, mapped, _pairs(values, "--set"))
    if not converted:
        fail("no AnalysisTemplate or ClusterAnalysisTemplate in " + ", ".join(files), EXIT_INVALID)
    out: list[str] = []
    for c in converted:
        header = f"# {c.kind}/{c.name} from {c.source}\n"
        body = yaml.dump(c.document(), Dumper=_Dumper, sort_keys=False, width=200) if c.document() else "{}\n"
        out.append(header + body)
    click.echo("---\n".join(out), nl=False)
    skipped = [s for c in converted for s in c.skipped]
    for c in converted:
        for note in c.notes:
            click.echo(f"note: {note}", err=True)
    for s in skipped:
        click.echo(f"cannot convert: {s}", err=True)
    if skipped:
        finish(EXIT_FAILED)
