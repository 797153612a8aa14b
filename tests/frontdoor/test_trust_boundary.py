"""The audit of docs/security.md, kept true by a test: no spec field can locate an endpoint, a credential or a file.

Every spec kind's JSON schema is walked; a property whose name says it locates something (a URL, a host, a
file, a path, a token's variable, a kubeconfig, a cluster) must be on the list below, each with the reason
it is not the worker reaching somewhere of the spec's choosing. A new field of that kind fails here until
it is judged and written down.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import SpecError
from orchestrator.specs.loader import kinds, load_text

# (kind, property) -> why it is safe; docs/security.md carries the same table.
JUDGED = {
    ("CanaryRollout", "stableHost"): "a host name inside the user's Istio VirtualService, routed by the mesh; "
                                     "the worker never connects to it",
    ("CanaryRollout", "canaryHost"): "likewise",
    ("ChaosExperiment", "volumePath"): "a mount path inside the target pods (Chaos Mesh IOChaos), within the "
                                       "blast radius",
    ("ChaosExperiment", "path"): "a glob under volumePath, inside the target pods",
    ("GameDay", "experiments"): "files read by the CLI beside the GameDay file (relative, no '..'), never by "
                                "the worker",
}
LOCATOR = re.compile(r"(?i)(url|uri|endpoint|address|host|file|path|token|secret|password|kubeconfig|cluster|"
                     r"credential|cert|^ca$|experiments)")


def _properties(node: Any, defs: dict[str, Any], seen: set[str]) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            out |= _properties(defs.get(ref.rsplit("/", 1)[-1], {}), defs, seen)
        for key, value in (node.get("properties") or {}).items():
            out.add(key)
            out |= _properties(value, defs, seen)
        for key, value in node.items():
            if key != "properties":
                out |= _properties(value, defs, seen)
    elif isinstance(node, list):
        for item in node:
            out |= _properties(item, defs, seen)
    return out


SPEC_KINDS = ["CanaryRollout", "FlagRamp", "ChaosExperiment", "GameDay"]


@pytest.mark.parametrize("kind", SPEC_KINDS)
def test_no_spec_field_locates_an_endpoint_a_credential_or_a_file(kind: str) -> None:
    schema = kinds()[kind].model_json_schema(by_alias=True)
    found = {p for p in _properties(schema, schema.get("$defs", {}), set()) if LOCATOR.search(p)}
    unjudged = sorted(p for p in found if (kind, p) not in JUDGED)
    assert unjudged == [], f"{kind}: fields that may locate something, not judged in docs/security.md: {unjudged}"


def test_every_judged_field_is_in_the_security_document() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    for kind, field in JUDGED:
        assert f"`{field}`" in text, f"docs/security.md does not discuss {kind}.{field}"


@pytest.mark.parametrize("path", ["/etc/passwd", "../secrets.yaml", "sub/../../x.yaml", "a\nb.yaml"])
def test_a_gameday_names_only_files_beside_it(path: str) -> None:
    text = ("apiVersion: orchestrator.dev/v1\nkind: GameDay\nmetadata: {name: g}\nspec:\n"
            f"  experiments: [{json.dumps(path)}]\n")
    with pytest.raises(SpecError) as refused:
        load_text(text, "gameday.yaml")
    [line] = refused.value.problems
    assert line.startswith("gameday.yaml:5: spec.experiments: ") and "inside the GameDay's folder" in line, line
