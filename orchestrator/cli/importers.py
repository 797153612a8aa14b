"""``import``: other tools' analysis definitions converted into this project's checks."""

from __future__ import annotations

import click
import yaml

from orchestrator.cli.common import EXIT_FAILED, EXIT_INVALID, fail, finish, handle_errors
from orchestrator.errors import SpecError


class _Dumper(yaml.SafeDumper):
    """The safe serializer, with multi-line strings (queries) as literal blocks, as people write them.

    Every byte of the converted checks goes through it: a name or a query is a scalar the dumper
    quotes or folds as YAML requires, never text pasted into the output.
    """


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SpecError([f"<command line>:0: {option}: {item!r} is not NAME=VALUE"])
        out[name] = value
    return out


@click.group(name="import")
def import_() -> None:
    """Convert other tools' analysis definitions into checks."""


@import_.command()
# Plain strings, not click.Path: the bounded reader answers for a directory or a device in the file:line form.
@click.argument("files", nargs=-1, required=True)
@click.option("--var", "variables", multiple=True, metavar="ARG=VARIABLE",
              help="Map {{args.ARG}} to a template variable (namespace, app, image, version, target).")
@click.option("--set", "values", multiple=True, metavar="ARG=VALUE", help="Give {{args.ARG}} a literal value.")
@handle_errors
def argo(files: tuple[str, ...], variables: tuple[str, ...], values: tuple[str, ...]) -> None:
    """Convert Argo Rollouts AnalysisTemplates / ClusterAnalysisTemplates (Prometheus provider).

    Prints the converted checks as YAML (validated) and, on stderr, one line per thing that could
    not be converted, with the reason. Exit 0 when everything converted, 1 when something did not,
    2 for unreadable or malformed input.
    """
    from orchestrator.importers.argo import Document, convert_documents
    from orchestrator.specs.checks import TEMPLATE_VARIABLES
    from orchestrator.specs.files import read_text, shown
    from orchestrator.specs.loader import MAX_FILE_BYTES, parse_yaml_all
    from orchestrator.specs.promql import unsafe_value

    mapped = _pairs(variables, "--var")
    for arg, var in mapped.items():
        if var not in TEMPLATE_VARIABLES - {"track", "track_selector", "variant"}:
            raise SpecError([f"<command line>:0: --var: {shown(arg)}={shown(var)}: {var!r} is not a "
                             "template variable (namespace, app, image, version, target)"])
    literal = _pairs(values, "--set")
    for arg, value in literal.items():
        problem = unsafe_value(value)
        if problem is not None:
            raise SpecError([f"<command line>:0: --set: {shown(arg)}: {shown(problem)}"])
    docs: list[Document] = []
    for path in files:
        text = read_text(path, limit=MAX_FILE_BYTES, hint="an analysis template is a few KiB of YAML")
        docs += [Document(path, data, lines) for data, lines in parse_yaml_all(text, shown(path))]
    converted = convert_documents(docs, mapped, literal)
    if not converted:
        fail("<command line>:0: files: no AnalysisTemplate or ClusterAnalysisTemplate in "
             + ", ".join(shown(f) for f in files), EXIT_INVALID)
    out: list[str] = []
    for c in converted:
        # The header is a comment: every character that could end it (a newline in a name) is escaped.
        header = f"# {shown(c.kind)}/{shown(c.name)} from {shown(c.source)}\n"
        document = c.document()
        body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=200) if document else "{}\n"
        out.append(header + body)
    click.echo("---\n".join(out), nl=False)
    skipped = [s for c in converted for s in c.skipped]
    for c in converted:
        for note in c.notes:
            click.echo(f"note: {shown(note)}", err=True)
    for s in skipped:
        click.echo(f"cannot convert: {shown(str(s))}", err=True)
    if skipped:
        finish(EXIT_FAILED)
