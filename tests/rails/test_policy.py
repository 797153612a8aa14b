"""The rails policy file: validated like a spec, ``file:line: field: message`` and exit 2 on errors."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.rails.chaos import ChaosPolicy
from orchestrator.specs.policy import load_policy, policy_from_env

GOOD = """\
apiVersion: orchestrator.dev/v1
kind: RailsPolicy
metadata: {name: production}
spec:
  namespaces: {allowed: [shop], protected: [payments]}
  recentDeployments: {quietPeriod: 45m}
  health:
    - name: burn
      query: slo:burn_rate1h{app="{{app}}"}
      max: 1
  freezes:
    - name: holidays
      start: "2026-12-24T00:00:00+01:00"
      end: "2026-12-27T00:00:00+01:00"
  staffedHours: {timezone: Europe/Berlin, start: "09:00", end: "17:00"}
"""

BAD = """\
apiVersion: orchestrator.dev/v1
kind: RailsPolicy
metadata: {name: production}
spec:
  freezes:
    - name: holidays
      start: 2026-12-24T00:00:00
      end: "2026-12-27T00:00:00+01:00"
  staffedHours:
    timezone: Mars/Olympus
    start: "09:00"
    end: "17:00"
  quietPeriod: 5m
"""


def test_a_policy_file_loads_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    p = load_policy(path)
    assert p.spec.recent_deployments.quiet_period == timedelta(minutes=45)
    assert p.spec.staffed_hours is not None and p.spec.staffed_hours.days == ["mon", "tue", "wed", "thu", "fri"]
    chaos = ChaosPolicy.from_policy(p, {"ORCHESTRATOR_NAMESPACE": "ops"})
    assert chaos.allowed_namespaces == {"shop"} and {"payments", "ops", "kube-system"} <= chaos.protected
    assert policy_from_env(env={"ORCHESTRATOR_POLICY": str(path)}).spec.freezes[0].name == "holidays"


def test_without_a_file_the_defaults_and_the_older_variables_apply() -> None:
    p = policy_from_env(env={"ORCHESTRATOR_CHAOS_NAMESPACES": "a,b"})
    assert p.spec.namespaces.allowed == ["a", "b"]
    assert p.spec.recent_deployments.quiet_period == timedelta(minutes=30)
    assert p.spec.freezes == [] and p.spec.staffed_hours is None


def test_a_bad_older_variable_is_a_one_line_error() -> None:
    with pytest.raises(SpecError) as err:
        policy_from_env(env={"ORCHESTRATOR_CHAOS_PROTECTED": "Payments"})
    assert err.value.problems[0].startswith("<environment>:0: ORCHESTRATOR_CHAOS_PROTECTED: String should match")


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(SpecError) as err:
        load_policy(path)
    problems = err.value.problems
    assert f"{path}:7: spec.freezes.0.start: give a timezone, e.g. 2026-12-24T00:00:00+01:00 or ...Z" in problems
    assert any(p.startswith(f"{path}:10: spec.staffedHours.timezone: unknown timezone 'Mars/Olympus'")
               for p in problems)
    assert f"{path}:13: spec.quietPeriod: unknown field" in problems


def test_a_bad_policy_is_exit_2_from_the_cli(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    spec = tmp_path / "ramp.yaml"
    spec.write_text("apiVersion: orchestrator.dev/v1\nkind: FlagRamp\nmetadata: {name: r}\nspec:\n"
                    "  provider: {type: flagd, name: main}\n  flag: f\n  stages: [{percent: 100}]\n")
    out = subprocess.run([sys.executable, "-m", "orchestrator", "flag", "ramp", str(spec), "--dry-run",
                          "--policy", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2, out.stderr
    assert f"{bad}:7: spec.freezes.0.start:" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("name", ["sandbox", "production"])
def test_the_example_policies_are_valid(name: str) -> None:
    p = load_policy(Path(__file__).resolve().parents[2] / "examples" / "rails" / f"{name}.yaml")
    if name == "sandbox":
        # The demo runs its experiment right after its canary: no quiet period there.
        assert p.spec.recent_deployments.quiet_period == timedelta(0)
        assert p.spec.namespaces.allowed == ["demo"]
    else:
        assert p.spec.staffed_hours is not None and p.spec.freezes and len(p.spec.health) == 2


def test_a_worker_with_a_bad_policy_stops_at_start_with_exit_2(tmp_path: Path, temporal_address: str) -> None:
    import os

    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    env = {**os.environ, "ORCHESTRATOR_POLICY": str(bad), "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address,
           "ORCHESTRATOR_KUBECONFIG": str(tmp_path / "none"), "ORCHESTRATOR_TASK_QUEUE": "rails-bad-policy"}
    out = subprocess.run([sys.executable, "-m", "orchestrator", "worker"], capture_output=True, text=True,
                         timeout=60, check=False, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{bad}:7: spec.freezes.0.start: give a timezone" in out.stderr
    assert "Traceback" not in out.stderr


# --- hostile or careless policies: one `file:line: field: message` line, exit 2, at `validate` -----------

HEAD = "apiVersion: orchestrator.dev/v1\nkind: RailsPolicy\nmetadata: {name: p}\nspec:\n"
INJECTION = 'critical"} and on() vector(0) > 1 or ALERTS{x="'

# (id, the lines under spec:, line, field, a fragment of the message)
REFUSED = [
    ("alert-label-injection", f"  incidents: {{matchLabels: {{severity: '{INJECTION}'}}}}\n", 5,
     "spec.incidents.matchLabels", "unsafe value"),
    ("alert-label-empty", "  incidents: {matchLabels: {severity: ''}}\n", 5, "spec.incidents.matchLabels",
     "unsafe value"),
    ("alert-label-name", "  incidents: {matchLabels: {'a-b': x}}\n", 5, "spec.incidents.matchLabels",
     "not a Prometheus label name"),
    ("alert-misspelt-placeholder", "  incidents: {matchLabels: {namespace: '{{namspace}}'}}\n", 5,
     "spec.incidents.matchLabels", "unknown template variable {{namspace}} (known: app, namespace)"),
    ("alert-open-placeholder", "  incidents: {matchLabels: {namespace: '{{namespace'}}\n", 5,
     "spec.incidents.matchLabels", "malformed template"),
    ("health-misspelt-placeholder", "  health: [{name: x, query: 'up{app=\"{{ap}}\"}', max: 1}]\n", 5,
     "spec.health.0.query", "unknown template variable {{ap}}"),
    ("health-selector-placeholder", "  health: [{name: x, query: 'up{ {{track_selector}} }', max: 1}]\n", 5,
     "spec.health.0.query", "unknown template variable {{track_selector}}"),
    ("health-value-outside-quotes", "  health: [{name: x, query: 'up > {{app}}', max: 1}]\n", 5,
     "spec.health.0.query", "may only appear inside a quoted label value"),
    ("health-unclosed", "  health: [{name: x, query: 'up{app=\"{{ app-x }}\"}', max: 1}]\n", 5,
     "spec.health.0.query", "malformed template"),
    ("staffed-start-seconds", '  staffedHours: {timezone: Europe/Berlin, start: 36000, end: "17:00"}\n', 5,
     "spec.staffedHours.start", "a time of day"),
    ("staffed-start-sexagesimal", "  staffedHours: {timezone: Europe/Berlin, start: 10:00, end: '17:00'}\n", 5,
     "spec.staffedHours.start", "in quotes"),
    ("staffed-start-aware", '  staffedHours: {timezone: Europe/Berlin, start: "10:00+05:00", end: "17:00"}\n', 5,
     "spec.staffedHours.start", "without an offset"),
    ("timezone-directory", '  staffedHours: {timezone: Europe, start: "10:00", end: "17:00"}\n', 5,
     "spec.staffedHours.timezone", "unknown timezone 'Europe'"),
    ("timezone-long", f'  staffedHours: {{timezone: {"a" * 5000}, start: "10:00", end: "17:00"}}\n', 5,
     "spec.staffedHours.timezone", "unknown timezone"),
    ("timezone-path", '  staffedHours: {timezone: ../../../etc/passwd, start: "10:00", end: "17:00"}\n', 5,
     "spec.staffedHours.timezone", "unknown timezone"),
    ("duration-400-digits", f"  recentDeployments: {{quietPeriod: {'9' * 400}}}\n", 5,
     "spec.recentDeployments.quietPeriod", "longer than the longest duration"),
    ("health-name-newline", "  health: [{name: \"x\\nrail health ok\", query: up, max: 1}]\n", 5,
     "spec.health.0.name", "String should match"),
    ("freeze-name-newline",
     "  freezes: [{name: \"x\\ny\", start: '2026-12-24T00:00:00Z', end: '2026-12-25T00:00:00Z'}]\n", 5,
     "spec.freezes.0.name", "String should match"),
    ("protected-newline", '  namespaces: {protected: ["payments\\n"]}\n', 5, "spec.namespaces.protected.0",
     "String should match"),
    ("allowed-newline", '  namespaces: {allowed: ["shop\\n"]}\n', 5, "spec.namespaces.allowed",
     "is not a namespace name"),
]


@pytest.mark.parametrize(("body", "line", "field", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_hostile_policy_is_one_line_exit_2_at_validate(
    tmp_path: Path, body: str, line: int, field: str, message: str
) -> None:
    import re

    from tests.frontdoor.helpers import assert_one_line, validate_text

    outcome, path = validate_text(tmp_path, HEAD + body, "policy.yaml")
    found = assert_one_line(outcome, 2, rf"^{re.escape(path)}:{line}: {re.escape(field)}[.:]")
    assert message in found, found


def test_placeholders_and_safe_values_still_validate(tmp_path: Path) -> None:
    from tests.frontdoor.helpers import validate_text

    body = ("  incidents: {matchLabels: {severity: critical, namespace: '{{namespace}}', team: 'shop-{{app}}'}}\n"
            "  health: [{name: x, query: 'up{app=~\"{{ app }}\",namespace=\"{{namespace}}\"}', max: 1}]\n"
            "  staffedHours: {timezone: America/Argentina/Buenos_Aires, start: '09:30', end: '17:00:30'}\n"
            "  recentDeployments: {quietPeriod: 1800}\n")
    outcome, _ = validate_text(tmp_path, HEAD + body, "policy.yaml")
    assert outcome.code == 0, outcome.err
