"""The GitHub Action's script with fake GITHUB_* files and a stand-in ``orchestrator`` on PATH, and the
versioned JSON result schema (``orchestrator schema Result``).

The stand-in prints what the real CLI prints: it renders a real status model with the real renderer,
so the script is tested against the actual Markdown (and its result marker), not a copy of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from orchestrator.cli.render import RESULT_SCHEMA_VERSION, render, result_model
from orchestrator.gates.model import CheckPhase, CheckStatus, Measurement, Phase

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ci-action.sh"


def status(phase: str, gate_phase: CheckPhase, reason: str | None) -> Any:
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    measurement = Measurement(check="error-rate", phase=Phase.FAILED if gate_phase is CheckPhase.FAILED
                              else Phase.SUCCESSFUL, value=0.12, query='sum(rate(x{track="canary"}[1m]))',
                              message="0.12 > max 0.02", at=at)
    gate = CheckStatus(check="error-rate", phase=gate_phase, measurements=3, failures=1, last=measurement,
                       reason=f"error-rate {gate_phase.value}")
    return result_model().model_validate({
        "name": "checkout", "namespace": "shop", "deployment": "checkout", "image": "shop/checkout:2.5.0",
        "phase": phase, "step": 2, "steps": 4, "gates": [gate.model_dump(mode="json")], "reason": reason,
        "decisive_gate": gate.model_dump(mode="json") if gate_phase is CheckPhase.FAILED else None,
    })


FAKE = """\
#!{python}
# Stand-in for `orchestrator`: records its arguments, prints what the real CLI prints, exits like it.
import json, os, sys
sys.path.insert(0, {root!r})
with open(os.environ["FAKE_ARGV"], "w") as f:
    json.dump(sys.argv[1:], f)
scenario = os.environ["FAKE_SCENARIO"]
if scenario == "unreachable":
    print("error: cannot reach Temporal at 127.0.0.1:7233: connection refused", file=sys.stderr)
    sys.exit(3)
from tests.ecosystem.test_ci_action import status
from orchestrator.cli.render import render
from orchestrator.gates.model import CheckPhase
if scenario == "promoted":
    st, code = status("promoted", CheckPhase.SUCCESSFUL, None), 0
else:
    st, code = status("rolled-back", CheckPhase.FAILED, "error-rate failed: 0.12 > max 0.02"), 1
print(render(st, "markdown", os.environ.get("FAKE_URL") or None))
sys.exit(code)
"""


def run_action(tmp_path: Path, scenario: str, *, url: str = "", image: str = "shop/checkout:2.5.0",
               extra: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess[str], dict[str, str], str,
                                                              list[str]]:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    fake = bindir / "orchestrator"
    fake.write_text(FAKE.format(python=sys.executable, root=str(ROOT)))
    fake.chmod(0o755)
    summary, outputs, argv = tmp_path / "summary.md", tmp_path / "outputs", tmp_path / "argv.json"
    summary.write_text("previous step's summary\n")
    outputs.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update({"PATH": f"{bindir}:{env['PATH']}", "GITHUB_STEP_SUMMARY": str(summary),
                "GITHUB_OUTPUT": str(outputs), "ORCH_SPEC": "examples/checkout-canary.yaml", "ORCH_IMAGE": image,
                "FAKE_SCENARIO": scenario, "FAKE_URL": url, "FAKE_ARGV": str(argv), **(extra or {})})
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    parsed = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
    return proc, parsed, summary.read_text(), json.loads(argv.read_text()) if argv.exists() else []


def test_rolled_back_canary_fails_the_step_with_summary_and_outputs(tmp_path: Path) -> None:
    url = "https://temporal.example/namespaces/default/workflows/canary-shop-checkout"
    proc, outputs, summary, argv = run_action(tmp_path, "rolled-back", url=url, extra={"ORCH_TIMEOUT": "900"})
    assert proc.returncode == 1
    assert argv == ["canary", "run", "examples/checkout-canary.yaml", "--wait", "-o", "markdown",
                    "--image", "shop/checkout:2.5.0", "--timeout", "900"]
    assert outputs == {"outcome": "rolled-back", "verdict": "failed", "workflow-url": url, "exit-code": "1"}
    # Appended, not overwritten: earlier steps' summaries stay.
    assert summary.startswith("previous step's summary\n### Canary `checkout`: Rolled back")
    assert "| error-rate | failed | 0.12 |" in summary


def test_promoted_canary_passes_with_empty_url_when_no_ui_is_configured(tmp_path: Path) -> None:
    proc, outputs, summary, argv = run_action(tmp_path, "promoted", image="",
                                              extra={"ORCH_ARGS": "--no-preflight --exit-on-pause"})
    assert proc.returncode == 0, proc.stderr
    assert argv == ["canary", "run", "examples/checkout-canary.yaml", "--wait", "-o", "markdown",
                    "--no-preflight", "--exit-on-pause"]
    assert outputs == {"outcome": "promoted", "verdict": "successful", "workflow-url": "", "exit-code": "0"}
    assert "### Canary `checkout`: Promoted" in summary


def test_no_result_still_explains_itself_and_keeps_the_exit_code(tmp_path: Path) -> None:
    proc, outputs, summary, _ = run_action(tmp_path, "unreachable")
    assert proc.returncode == 3
    assert outputs == {"outcome": "unreachable", "verdict": "none", "workflow-url": "", "exit-code": "3"}
    assert "cannot reach Temporal" in summary and "unreachable (exit 3)" in summary


def test_action_yml_runs_the_script_and_maps_its_outputs() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    canary = next(s for s in steps if s.get("id") == "canary")
    assert "scripts/ci-action.sh" in canary["run"]
    assert set(canary["env"]) == {"ORCH_SPEC", "ORCH_IMAGE", "ORCH_TIMEOUT", "ORCH_ARGS"}
    for name in ("outcome", "verdict", "workflow-url", "exit-code"):
        assert action["outputs"][name]["value"] == f"${{{{ steps.canary.outputs.{name} }}}}"
    assert action["inputs"]["spec"]["required"] is True
    syntax = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.parametrize("phase,gate", [("rolled-back", CheckPhase.FAILED), ("promoted", CheckPhase.SUCCESSFUL)])
def test_json_result_validates_against_the_published_schema(phase: str, gate: CheckPhase) -> None:
    proc = subprocess.run([sys.executable, "-m", "orchestrator", "schema", "Result"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["title"] == "Result" and schema["properties"]["schemaVersion"]["const"] == RESULT_SCHEMA_VERSION
    jsonschema.Draft202012Validator.check_schema(schema)
    result = json.loads(render(status(phase, gate, None), "json", "https://ui/wf"))
    jsonschema.validate(result, schema)
    assert result["schemaVersion"] == RESULT_SCHEMA_VERSION and result["workflowUrl"] == "https://ui/wf"
    assert result["verdict"] == gate.value
    # A result missing a field the schema requires, or of the wrong type, is rejected.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in result.items() if k != "phase"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**result, "schemaVersion": RESULT_SCHEMA_VERSION + 1}, schema)


def test_gitlab_example_in_the_docs_is_valid_yaml_using_the_same_script() -> None:
    doc = (ROOT / "docs" / "ci.md").read_text()
    block = doc.split("```yaml\n# .gitlab-ci.yml", 1)[1].split("```", 1)[0]
    job = yaml.safe_load(textwrap.dedent(block))
    assert "canary" in job
    assert any("scripts/ci-action.sh" in line for line in job["canary"]["script"])


def test_gitlab_dotenv_report_carries_the_outputs(tmp_path: Path) -> None:
    dotenv = tmp_path / "canary.env"
    proc, _, _, _ = run_action(tmp_path, "rolled-back", extra={"ORCH_DOTENV": str(dotenv)})
    assert proc.returncode == 1
    values = dict(line.split("=", 1) for line in dotenv.read_text().splitlines())
    assert values == {"CANARY_OUTCOME": "rolled-back", "CANARY_VERDICT": "failed", "CANARY_WORKFLOW_URL": "",
                      "CANARY_EXIT_CODE": "1"}
