"""Rendering rollout status as text (live progress), JSON and Markdown (a CI job summary).

The JSON output of ``canary run|status -o json`` is a contract CI scripts rely on, so it is
versioned: the status model's fields, plus ``schemaVersion``, ``verdict`` and ``workflowUrl``.
``result_schema()`` publishes it (``orchestrator schema Result``), derived from the status model
class found by import, so it follows the model wherever it lives. Adding a field keeps the version;
renaming or removing one, or changing a type, bumps ``RESULT_SCHEMA_VERSION``.

The Markdown summary ends with the same three facts in an HTML comment (invisible in a rendered
job summary), so a CI step that asked for Markdown can still read them without a second call.
"""

from __future__ import annotations

import importlib
import json
import math
from typing import Any

from pydantic import BaseModel

from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement

RESULT_SCHEMA_VERSION = 1
# Where the canary status model lives, newest home first.
RESULT_MODEL_MODULES = ("orchestrator.api.canary", "orchestrator.api.canary")
RESULT_MARKER = "orchestrator-result"


def fmt_value(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def gate_line(gate: CheckStatus) -> str:
    last: Measurement | None = gate.last
    value = fmt_value(last.value) if last else "—"
    detail = last.message if last else ""
    return (
        f"{gate.check:<24} {gate.phase.value:<12} value {value:<10} "
        f"({gate.measurements} measured, {gate.failures} failed) {detail}"
    ).rstrip()


def status_text(st: Any) -> str:
    lines = [
        f"{st.name}  {st.namespace}/{st.deployment}  image {st.image}",
        f"phase {st.phase.value}   step {min(st.step + 1, st.steps)}/{st.steps}"
        f"{' (' + st.step_description + ')' if st.step_description else ''}   canary weight {st.weight}%"
        f"{'   PAUSED' if st.paused else ''}",
    ]
    if st.waiting_for:
        lines.append(f"waiting for: {st.waiting_for}")
    for gate in st.gates:
        lines.append("  " + gate_line(gate))
    if st.reason:
        lines.append(f"reason: {st.reason}")
    return "\n".join(lines)


def result_model() -> type[BaseModel]:
    """The canary status model class (the body of the JSON result)."""
    for module in RESULT_MODEL_MODULES:
        try:
            model = getattr(importlib.import_module(module), "CanaryStatus", None)
        except ModuleNotFoundError:
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model
    raise RuntimeError("the canary status model is missing")  # pragma: no cover - a broken installation


def verdict(st: Any) -> str:
    """The gates' verdict in one word: the decisive gate's, else the worst of the gates, else ``none``."""
    if getattr(st, "decisive_gate", None) is not None:
        return str(st.decisive_gate.phase.value)
    phases = [g.phase.value for g in st.gates]
    for worst in ("failed", "error", "inconclusive", "running"):
        if worst in phases:
            return worst
    return "successful" if phases else "none"


def result_fields(st: Any, ui_url: str | None) -> dict[str, Any]:
    return {"schemaVersion": RESULT_SCHEMA_VERSION, "verdict": verdict(st), "workflowUrl": ui_url}


def result_schema() -> dict[str, Any]:
    """JSON Schema of ``canary run|status -o json``."""
    schema = result_model().model_json_schema(mode="serialization")
    schema["title"] = "Result"
    schema["$id"] = f"https://orchestrator.dev/schemas/result-v{RESULT_SCHEMA_VERSION}.json"
    schema["description"] = (f"Result of `orchestrator canary run|status -o json`, schema version "
                             f"{RESULT_SCHEMA_VERSION}: the canary status plus schemaVersion, verdict and workflowUrl.")
    props = schema.setdefault("properties", {})
    props["schemaVersion"] = {"const": RESULT_SCHEMA_VERSION, "description": "Bumped on incompatible changes."}
    props["verdict"] = {"enum": [*(p.value for p in CheckPhase), "none"],
                        "description": "The decisive gate's verdict, else the worst gate's."}
    props["workflowUrl"] = {"anyOf": [{"type": "string"}, {"type": "null"}],
                            "description": "The rollout in the Temporal UI, when ORCHESTRATOR_TEMPORAL_UI is set."}
    schema["required"] = sorted({*schema.get("required", []), "schemaVersion", "verdict", "workflowUrl"})
    return schema


def status_json(st: Any, ui_url: str | None = None) -> str:
    return json.dumps({**result_fields(st, ui_url), **st.model_dump(mode="json")}, indent=2)


def status_markdown(st: Any, ui_url: str | None = None) -> str:
    outcome = {"promoted": "Promoted", "rolled-back": "Rolled back", "aborted": "Aborted"}.get(
        st.phase.value, st.phase.value
    )
    out = [
        f"### Canary `{st.name}`: {outcome}",
        "",
        f"- Target: `{st.namespace}/{st.deployment}`",
        f"- Image: `{st.image}`",
        f"- Step: {min(st.step + 1, st.steps)}/{st.steps}; canary weight {st.weight}%",
    ]
    if st.reason:
        out.append(f"- Reason: {st.reason}")
    if st.rollback_started_at and st.weight_zero_at:
        secs = (st.weight_zero_at - st.rollback_started_at).total_seconds()
        out.append(f"- Traffic back on stable {secs:.2f}s after the rollback decision")
    if ui_url:
        out.append(f"- Workflow: {ui_url}")
    if st.gates:
        out += ["", "| check | verdict | last value | measured | failed | detail |", "|---|---|---|---|---|---|"]
        for g in st.gates:
            last = g.last
            detail = (last.message if last else "").replace("|", "\\|")
            out.append(
                f"| {g.check} | {g.phase.value} | {fmt_value(last.value if last else None)} | "
                f"{g.measurements} | {g.failures} | {detail} |"
            )
    if st.gates and any(g.last for g in st.gates):
        out += ["", "<details><summary>Queries as sent</summary>", ""]
        for g in st.gates:
            if g.last:
                out += [f"`{g.check}`:", "```promql", g.last.query.strip(), "```"]
        out.append("</details>")
    facts = {"outcome": st.phase.value, **result_fields(st, ui_url)}
    out += ["", f"<!-- {RESULT_MARKER} {json.dumps(facts)} -->"]
    return "\n".join(out) + "\n"


def render(st: Any, output: str, ui_url: str | None = None) -> str:
    if output == "json":
        return status_json(st, ui_url)
    if output == "markdown":
        return status_markdown(st, ui_url)
    return status_text(st)
