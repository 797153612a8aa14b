"""Rendering rollout status as text (live progress), JSON and Markdown (a CI job summary)."""

from __future__ import annotations

import json
import math
from typing import Any

from orchestrator.gates.model import CheckStatus, Measurement


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


def status_json(st: Any) -> str:
    return json.dumps(st.model_dump(mode="json"), indent=2)


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
    return "\n".join(out) + "\n"


def render(st: Any, output: str, ui_url: str | None = None) -> str:
    if output == "json":
        return status_json(st)
    if output == "markdown":
        return status_markdown(st, ui_url)
    return status_text(st)
