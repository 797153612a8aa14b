"""The spec reference of the docs site, generated from the pydantic models' JSON Schemas.

One page per spec kind, ``docs/reference/<Kind>.md``, from ``orchestrator.specs.loader.schema(kind)`` for every
kind in ``orchestrator.specs.loader.kinds()``, plus ``docs/reference/index.md`` listing them. The models are the
single source: the same schema is what ``orchestrator schema KIND`` prints for editors and what ``validate``
enforces, so the reference cannot drift from the code.

The pages are generated at build time and kept out of git (``docs/reference/`` is in ``.gitignore``). MkDocs runs
this file as a hook (``hooks:`` in ``mkdocs.yml``): ``on_config`` puts one navigation entry per kind under "Spec
reference", ``on_pre_build`` writes the pages before MkDocs collects the files. Run by hand, it writes them to
the directory given (default ``docs/reference``)::

    .venv/bin/python scripts/gen_spec_reference.py [OUTDIR]

Rendering rules: each object (the kind itself, then every ``$defs`` entry in the order a reader meets them) is a
section with a table of its fields: name, type, required, default, constraints and description. A ``$ref`` is a
link to its section; ``anyOf``/``oneOf`` are "A or B" (a ``null`` alternative means the field may be omitted);
a discriminated union names its ``type`` values. pydantic writes durations' defaults in ISO 8601 (``PT10M``);
they are shown the way a spec writes them (``10m``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

# What each kind is for, and the page that explains it (the models carry no docstring of their own).
ABOUT: dict[str, tuple[str, str]] = {
    "CanaryRollout": ("a canary rollout of a new version of a Deployment, gated step by step", "../canary.md"),
    "FlagRamp": ("a feature-flag variant ramped through stages while gates watch", "../flags.md"),
    "ChaosExperiment": ("one fault, its steady-state hypothesis, its blast radius and its rails", "../chaos.md"),
    "GameDay": ("chaos experiments run in order, stopping at the first that does not recover", "../chaos.md"),
    "RailsPolicy": ("the operator's pre-flight rails: freezes, staffed hours, namespaces, health", "../rails.md"),
    "OperatorSettings": ("the operator's settings file: flag providers, clusters and where they live",
                         "../security.md"),
    "Release": ("a fleet release: waves of canaries across clusters", "../releases.md"),
}

DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"
_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def short_duration(iso: str) -> str:
    """``PT1H30M`` -> ``1h30m``; ``PT0S`` -> ``0s``; anything else is returned as it is."""
    m = _ISO_DURATION.match(iso)
    if not m or iso in ("P", "PT"):
        return iso
    parts = [f"{v}{unit}" for v, unit in zip(m.groups(), ("d", "h", "m", "s"), strict=True) if v]
    return "".join(parts) or "0s"


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _anchor(name: str) -> str:
    return name.lower()


def _code(text: str) -> str:
    """An inline code span; Python-Markdown's tables never split a row inside one, so pipes stay as they are."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _prose(text: str) -> str:
    """A docstring or description as one table-safe line; reST double backticks become Markdown ones."""
    text = " ".join(text.split())
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return text.replace("|", "\\|")


def type_of(node: dict[str, Any]) -> str:
    """The Markdown for a schema node's type."""
    if "$ref" in node:
        name = _ref_name(node["$ref"])
        return f"[{name}](#{_anchor(name)})"
    if "const" in node:
        return _code(json.dumps(node["const"]))
    if "enum" in node:
        return "one of " + ", ".join(_code(json.dumps(v)) for v in node["enum"])
    for key in ("oneOf", "anyOf"):
        if key in node:
            alts = [a for a in node[key] if a.get("type") != "null"]
            text = " or ".join(type_of(a) for a in alts) or "null"
            disc = node.get("discriminator", {}).get("propertyName")
            if disc:
                text += f" (chosen by `{disc}`)"
            return text
    kind = node.get("type")
    if kind == "array":
        return "list of " + type_of(node.get("items", {}))
    if kind == "object":
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            keys = node.get("propertyNames", {}).get("pattern")
            key_text = f"name ({_code(keys)})" if keys else "string"
            return f"map of {key_text} to {type_of(extra)}"
        if node.get("patternProperties"):
            (pattern, value), *_ = node["patternProperties"].items()
            return f"map of name ({_code(pattern)}) to {type_of(value)}"
        return "object"
    if kind == "string" and node.get("pattern") == DURATION_PATTERN:
        return "duration"
    if kind == "string" and node.get("format"):
        return f"string ({node['format']})"
    if isinstance(kind, list):
        return " or ".join(kind)
    return kind or "any"


def constraints_of(node: dict[str, Any]) -> str:
    """Bounds, lengths, patterns and examples of a node (and of its non-null alternative)."""
    for key in ("anyOf", "oneOf"):
        alts = [a for a in node.get(key, []) if a.get("type") != "null"]
        if len(alts) == 1 and "$ref" not in alts[0]:
            node = {**alts[0], **{k: v for k, v in node.items() if k != key}}
    out: list[str] = []
    for key, text in (("minimum", ">= {}"), ("exclusiveMinimum", "> {}"), ("maximum", "<= {}"),
                      ("exclusiveMaximum", "< {}"), ("minLength", "at least {} character{}"),
                      ("maxLength", "at most {} character{}"), ("minItems", "at least {} item{}"),
                      ("maxItems", "at most {} item{}"), ("minProperties", "at least {} entr{}"),
                      ("maxProperties", "at most {} entr{}")):
        if key in node:
            plural = ("y" if node[key] == 1 else "ies") if "entr" in text else ("" if node[key] == 1 else "s")
            out.append(text.format(node[key], plural))
    items = node.get("items")
    if isinstance(items, dict) and "$ref" not in items:
        inner = constraints_of(items)
        if inner:
            out.append(f"each: {inner}")
    pattern = node.get("pattern")
    if pattern == DURATION_PATTERN:
        out.append("e.g. `30s`, `5m`, `1h30m`")
    elif pattern:
        out.append(f"matches {_code(pattern)}")
    elif node.get("examples"):
        out.append("e.g. " + ", ".join(_code(str(e)) for e in node["examples"]))
    return "; ".join(out)


def default_of(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    if value is None:
        return "none"
    if isinstance(value, str) and _ISO_DURATION.match(value) and value.startswith("P"):
        return _code(short_duration(value))
    return _code(json.dumps(value, separators=(", ", ": ")))


def object_section(name: str, node: dict[str, Any], level: int) -> list[str]:
    lines = [f"{'#' * level} {name}", ""]
    if node.get("description"):
        lines += [_prose(node["description"]), ""]
    props: dict[str, Any] = node.get("properties", {})
    if not props:
        lines += [f"Type: {type_of(node)}.", ""]
        return lines
    required = set(node.get("required", []))
    described = any(sub.get("description") for sub in props.values())
    header = ["field", "type", "required", "default", "constraints"] + (["description"] if described else [])
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for field, sub in props.items():
        cells = [f"`{field}`", type_of(sub), "yes" if field in required else "", default_of(sub),
                 constraints_of(sub)]
        if described:
            cells.append(_prose(sub.get("description", "")))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if node.get("additionalProperties") is False:
        lines += ["Unknown keys are errors.", ""]
    return lines


def _refs_in(node: Any) -> list[str]:
    """Every ``$ref`` below a node, in document order."""
    found: list[str] = []
    if isinstance(node, dict):
        if "$ref" in node:
            found.append(_ref_name(node["$ref"]))
        for key, value in node.items():
            if key != "discriminator":
                found += _refs_in(value)
    elif isinstance(node, list):
        for value in node:
            found += _refs_in(value)
    return found


def reading_order(schema: dict[str, Any]) -> list[str]:
    """The ``$defs`` breadth first from the root, as a reader meets them; unreachable ones last, by name."""
    defs: dict[str, Any] = schema.get("$defs", {})
    order: list[str] = []
    queue = _refs_in({k: v for k, v in schema.items() if k != "$defs"})
    while queue:
        name = queue.pop(0)
        if name in order or name not in defs:
            continue
        order.append(name)
        queue += _refs_in(defs[name])
    return order + sorted(set(defs) - set(order))


def render(kind: str, schema: dict[str, Any], docs_dir: Path | None = None) -> str:
    """One kind's page; the link to its guide only when ``docs_dir`` holds that page (strict builds)."""
    about, page = ABOUT.get(kind, ("", ""))
    if docs_dir is None or not (docs_dir / "reference" / page).resolve().is_file():
        page = ""
    lines = [f"# {kind}", ""]
    if about:
        lines += [f"`kind: {kind}`: {about}" + (f" ([guide]({page}))." if page else "."), ""]
    lines += [
        "Generated from the pydantic models by `scripts/gen_spec_reference.py` when the site is built.",
        f"`orchestrator schema {kind}` prints the same JSON Schema for editors; `orchestrator validate FILE` checks",
        "a file against it and reports every mistake as `file:line: field: message` (exit 2).",
        "",
    ]
    lines += object_section(kind, schema, 2)[2:]
    for name in reading_order(schema):
        lines += object_section(name, schema["$defs"][name], 2)
    return "\n".join(lines).rstrip() + "\n"


def pages(docs_dir: Path | None = None) -> dict[str, str]:
    """File name -> Markdown, for every spec kind and the index."""
    from orchestrator.specs import loader

    out: dict[str, str] = {}
    index = [
        "# Spec reference",
        "",
        "Every file the orchestrator reads is one of these kinds (`apiVersion: orchestrator.dev/v1`). The pages are",
        "generated from the pydantic models that `orchestrator validate` uses, so they say exactly what is",
        "accepted. Unknown keys are errors in every kind.",
        "",
        "| kind | what it describes |",
        "| --- | --- |",
    ]
    for kind in loader.kinds():
        out[f"{kind}.md"] = render(kind, loader.schema(kind), docs_dir)
        index.append(f"| [{kind}]({kind}.md) | {ABOUT.get(kind, ('', ''))[0]} |")
    out["index.md"] = "\n".join(index) + "\n"
    return out


def write(outdir: Path) -> list[Path]:
    """Write the pages, each only when its text changed (atomically), and remove pages of kinds that are gone."""
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    rendered = pages(outdir.resolve().parent)
    for name, text in rendered.items():
        path = outdir / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        fd, tmp = tempfile.mkstemp(dir=outdir, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
        written.append(path)
    for stale in outdir.glob("*.md"):
        if stale.name not in rendered:
            stale.unlink(missing_ok=True)
    return written


# MkDocs hooks (mkdocs.yml: hooks: [scripts/gen_spec_reference.py]).

def on_config(config: Any) -> Any:
    """Expand the nav entry ``reference/index.md`` into the index and one entry per kind."""
    from orchestrator.specs import loader

    entries: list[Any] = ["reference/index.md", *({kind: f"reference/{kind}.md"} for kind in loader.kinds())]

    def expand(nav: list[Any]) -> None:
        for i, item in enumerate(nav):
            if isinstance(item, dict):
                ((title, value),) = item.items()
                if value == "reference/index.md":
                    nav[i] = {title: entries}
                elif isinstance(value, list):
                    expand(value)

    if config.get("nav"):
        expand(config["nav"])
    return config


def on_pre_build(config: Any) -> None:
    write(Path(config["docs_dir"]) / "reference")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "reference"
    for path in write(target):
        print(path)
