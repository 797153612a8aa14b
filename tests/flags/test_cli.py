"""``orchestrator flag``: invalid ramp files give one line ``file:line: field: message`` and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

VALID = """apiVersion: orchestrator.dev/v1
kind: FlagRamp
metadata:
  name: new-checkout
spec:
  provider: {type: flagd, name: shop-flags}
  flag: new-checkout
  variant: "on"
  stages:
    - {percent: 10, hold: 1m}
    - {percent: 100}
"""


def orchestrator(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from orchestrator.cli.main import main; main()", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("{percent: 10, hold: 1m}", "{percent: 150, hold: 1m}",
         ":10: spec.stages.0.percent: Input should be less than or equal to 100"),
        ("{percent: 10, hold: 1m}", "{percent: 10, hold: soon}", ":10: spec.stages.0.hold: "),
        ("    - {percent: 100}\n", "    - {percent: 5}\n", ":5: spec: stage percentages must rise strictly"),
        ("type: flagd, name: shop-flags", "type: flagd",
         ":6: spec.provider.name: required field is missing: the name of one of the operator"),
        ("type: flagd, name: shop-flags", "type: flagd, name: x, file: /etc/passwd",
         ":6: spec.provider.file: file is no longer written in a spec"),
        ("type: flagd, name: shop-flags", "type: unleash, name: x, url: 'http://127.0.0.1:1/'",
         ":6: spec.provider.url: url is no longer written in a spec"),
        ("type: flagd, name: shop-flags", "type: unleash, name: x, tokenEnv: ORCHESTRATOR_DATABASE_URL",
         ":6: spec.provider.tokenEnv: tokenEnv is no longer written in a spec"),
        ("type: flagd, name: shop-flags", "type: flagd, name: x, configMap: {namespace: kube-system, name: x}",
         ":6: spec.provider.configMap: configMap is no longer written in a spec"),
        ("type: flagd, name: shop-flags", "type: flagd, name: 'http://x/'", ":6: spec.provider.name: "),
        ("type: flagd, name: shop-flags", "type: launchdarkly", ":6: spec.provider"),
        ("  flag: new-checkout\n", "  flag: new-checkout\n  colour: red\n", ":8: spec.colour: unknown field"),
        ("  flag: new-checkout\n", "", ":5: spec.flag: required field is missing"),
        ('  variant: "on"\n', '  variant: "on"\n  onFailure: explode\n', ":9: spec.onFailure: "),
    ],
)
def test_an_invalid_ramp_file_is_one_clear_line_and_exit_2(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert old in VALID
    path = tmp_path / "ramp.yaml"
    path.write_text(VALID.replace(old, new, 1))
    result = orchestrator("flag", "ramp", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{path}{expected}"), lines[0]


def test_a_valid_file_with_temporal_unreachable_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "ramp.yaml"
    path.write_text(VALID)
    from tests.fixtures_temporal import free_port

    result = orchestrator("--temporal-address", f"127.0.0.1:{free_port()}", "flag", "ramp", str(path))
    assert result.returncode == 3, result.stderr
    assert result.stderr.strip().startswith("error: cannot reach Temporal"), result.stderr


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("flag-ramp-*.yaml")), ids=lambda p: p.name)
def test_the_examples_are_valid(example: Path) -> None:
    result = orchestrator("validate", str(example))
    assert result.returncode == 0, result.stderr
