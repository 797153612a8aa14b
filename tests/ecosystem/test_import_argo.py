"""``orchestrator import argo`` on AnalysisTemplates of the shapes Argo Rollouts' documentation shows."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import PrometheusSettings
from orchestrator.gates.evaluate import evaluate
from orchestrator.gates.model import Phase
from orchestrator.gates.prometheus import PrometheusProvider
from orchestrator.specs.checks import Check
from orchestrator.specs.loader import load_file
from tests.ecosystem.prom_history import REGRESSION_AT, T0

ARGO = Path(__file__).parent / "argo"
pytestmark = pytest.mark.timeout(120)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "import", "argo", *args],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


def converted(*files: str, extra: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], list[str], int]:
    proc = run(*(str(ARGO / f) for f in files), *extra)
    assert "Traceback" not in proc.stderr, proc.stderr
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return docs, proc.stderr.splitlines(), proc.returncode


def checks_by_name(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for d in docs:
        for c in [*d.get("analysis", {}).get("checks", []), *d.get("backgroundChecks", [])]:
            out[c["name"]] = c
    return out


def test_common_shapes_convert_completely_with_their_limits(tmp_path: Path) -> None:
    docs, stderr, code = converted("success-rate.yaml", "error-rate.yaml", "shapes.yaml")
    assert code == 0, stderr
    assert not [line for line in stderr if line.startswith("cannot convert")]
    c = checks_by_name(docs)
    assert c["error-rate"]["condition"] == {"max": 0.01}
    assert (c["error-rate"]["interval"], c["error-rate"]["count"], c["error-rate"]["initialDelay"]) == ("1m", 5, "2m")
    assert (c["error-rate"]["failureLimit"], c["error-rate"]["inconclusiveLimit"],
            c["error-rate"]["consecutiveErrorLimit"]) == (1, 1, 2)
    # {{args.window}} has a literal value in the template; namespace/service map to template variables.
    assert '[2m]' in c["error-rate"]["query"] and 'app="{{app}}"' in c["error-rate"]["query"]
    assert 'namespace="{{namespace}}"' in c["error-rate"]["query"]
    assert c["p95-latency"]["condition"] == {"max": 0.5}  # failureCondition result[0] > 0.5, negated
    assert c["success-rate"]["condition"] == {"min": 0.95} and c["success-rate"]["failureLimit"] == 3
    assert c["no-alerts"]["query"].startswith("count(ALERTS{") and c["no-alerts"]["condition"] == {"max": 0.0}
    assert c["success-or-idle"]["noData"] == "pass" and c["success-or-idle"]["condition"] == {"min": 0.95}
    assert c["per-pod-latency"]["condition"] == {"max": 1.0}
    assert c["canary-errors"]["count"] == 3  # Argo's int-or-string count, given as "3"
    assert "{{track_selector}}" in c["canary-errors"]["query"] and "rollouts_pod_template_hash" not in \
        c["canary-errors"]["query"]
    # A metric with a count is an analysis check, one without (Argo runs it to the end) a background check.
    background = {x["name"] for d in docs for x in d.get("backgroundChecks", [])}
    assert background == {"success-rate", "p95-latency"}
    assert any("prometheus.address" in line and "dropped" in line for line in stderr)
    assert any("strict < read as <=" in line for line in stderr)
    # The output is valid spec YAML: the checks load in a CanaryRollout through the spec loader.
    for d in docs:
        spec = {"apiVersion": "orchestrator.dev/v1", "kind": "CanaryRollout", "metadata": {"name": "imported"},
                "spec": {"target": {"namespace": "shop", "deployment": "checkout"},
                         "steps": [{"setWeight": 20}, *([{"analysis": d["analysis"]}] if "analysis" in d else [])],
                         "backgroundChecks": d.get("backgroundChecks", [])}}
        if "analysis" not in d:
            spec["spec"]["steps"].append({"pause": {"duration": "5m"}})
        path = tmp_path / "imported.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        load_file(path)


def test_what_cannot_convert_gets_one_line_with_its_reason() -> None:
    docs, stderr, code = converted("unconvertible.yaml")
    assert code == 1
    lines = [line for line in stderr if line.startswith("cannot convert:")]
    assert len(lines) == 6, stderr
    assert any("web-check: provider: only the prometheus provider converts" in line for line in lines)
    assert any("datadog-errors: provider" in line for line in lines)
    assert any("two-values: successCondition" in line and "&&" in line for line in lines)
    assert any("with-token: args.api-token: its value comes from secretKeyRef" in line for line in lines)
    assert any("shadow-latency: dryRun" in line for line in lines)
    assert any("measurementRetention" in line for line in lines)
    # The dry-run metric is still converted (and said so); the others are not in the output.
    assert set(checks_by_name(docs)) == {"shadow-latency"}


def test_explicit_mapping_and_values_override_the_name_heuristic() -> None:
    docs, stderr, _code = converted("unconvertible.yaml",
                                   extra=("--set", "api-token=abc", "--var", "service=target"))
    c = checks_by_name(docs)
    assert 'token="abc"' in c["with-token"]["query"] and 'app="{{target}}"' in c["with-token"]["query"]
    assert not any("api-token" in line for line in stderr if line.startswith("cannot convert"))
    bad = run(str(ARGO / "shapes.yaml"), "--var", "service=track")
    assert bad.returncode == 2 and "not a template variable" in bad.stderr


def test_unreadable_input_exits_2_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: AnalysisTemplate\nspec: [unclosed\n")
    proc = run(str(broken))
    assert proc.returncode == 2 and proc.stderr.startswith(f"{broken}:") and len(proc.stderr.splitlines()) == 1
    other = tmp_path / "deployment.yaml"
    other.write_text("kind: Deployment\n")
    proc = run(str(other))
    assert proc.returncode == 2 and "no AnalysisTemplate" in proc.stderr


def test_a_converted_check_measures_real_history(history: str) -> None:
    docs, _, _ = converted("error-rate.yaml")
    check = Check.model_validate(checks_by_name(docs)["error-rate"])
    provider = PrometheusProvider(PrometheusSettings(url=history))
    variables = {"namespace": "shop", "app": "checkout"}
    # Canary and stable together: 0.5 % before the regression, (20 % + 0.5 %) / 2 after it.
    before = evaluate(check, provider, variables, at=REGRESSION_AT - timedelta(minutes=5))
    after = evaluate(check, provider, variables, at=REGRESSION_AT + timedelta(minutes=5))
    assert before.phase is Phase.SUCCESSFUL and before.value == pytest.approx(0.005, rel=0.01)
    assert after.phase is Phase.FAILED and after.value == pytest.approx(0.1025, rel=0.01)
    assert T0 < REGRESSION_AT
