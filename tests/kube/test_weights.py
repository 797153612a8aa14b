"""Weights by replica ratio: what pods can represent, the validate-time warnings, and setWeight by replicas."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import SpecError
from orchestrator.specs.canary import CanaryReplicas, CanaryRollout
from orchestrator.specs.loader import load_text
from orchestrator.specs.weights import effective_weight, pods_split, replica_split

EXAMPLE = (Path(__file__).resolve().parents[2] / "examples" / "checkout-canary.yaml").read_text()


def _load(text: str) -> CanaryRollout:
    spec = load_text(text, "spec.yaml")
    assert isinstance(spec, CanaryRollout)
    return spec


@pytest.mark.parametrize(
    ("weight", "effective"), [(5, 25.0), (20, 25.0), (25, 25.0), (50, 50.0), (75, 75.0), (100, 80.0)]
)
def test_effective_weight_on_four_replicas(weight: int, effective: float) -> None:
    assert effective_weight(*replica_split(4, weight)) == pytest.approx(effective)


def test_pods_split_names_canary_pods() -> None:
    assert pods_split(4, 1) == (3, 1)
    assert pods_split(4, 4) == (1, 4)  # the stable keeps one pod until promotion
    assert pods_split(4, 0) == (4, 0)
    assert replica_split(0, 0) == (0, 0)


def test_validate_warns_about_weights_the_declared_replicas_cannot_run() -> None:
    spec = _load(EXAMPLE.replace("type: replicas", "type: replicas\n    replicas: 4"))
    warnings = spec.spec.warnings()
    assert len(warnings) == 2
    assert warnings[0].startswith("spec.steps[0].setWeight: 20% cannot be represented with 4 replicas")
    assert "is 25% of traffic" in warnings[0] and "setWeight: {replicas: 1}" in warnings[0]
    assert warnings[1].startswith("spec.steps[4].setWeight: 100%") and "80%" in warnings[1]
    # 50 % of 4 is exact; without the hint nothing is known, so nothing is said.
    assert _load(EXAMPLE).spec.warnings() == []


def test_set_weight_by_replicas() -> None:
    spec = _load(EXAMPLE.replace("    - setWeight: 50", "    - setWeight: {replicas: 2}"))
    assert spec.spec.steps[2].set_weight == CanaryReplicas(replicas=2)  # type: ignore[union-attr]
    mesh = EXAMPLE.replace(
        "traffic:\n    type: replicas",
        "traffic:\n    type: gateway-api\n    httpRoute: r\n    stableService: a\n    canaryService: b",
    ).replace("    - setWeight: 50", "    - setWeight: {replicas: 2}")
    with pytest.raises(SpecError) as err:
        _load(mesh)
    assert any("needs traffic type replicas" in p for p in err.value.problems)


@pytest.mark.parametrize(("value", "message"), [("150", "less than or equal to 100"), ("true", "setWeight")])
def test_set_weight_refuses_what_is_not_a_percentage(value: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        _load(EXAMPLE.replace("    - setWeight: 50", f"    - setWeight: {value}"))
    assert len(err.value.problems) == 1 and message in err.value.problems[0]


def test_canary_run_prints_the_warnings_before_starting(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    spec = tmp_path / "hint.yaml"
    spec.write_text(EXAMPLE.replace("type: replicas", "type: replicas\n    replicas: 4"))
    env = {**os.environ, "ORCHESTRATOR_TEMPORAL_ADDRESS": "127.0.0.1:1", "KUBECONFIG": str(tmp_path / "none")}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "canary", "run", str(spec)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert done.returncode == 3, done.stderr  # nothing to reach: the warnings came first all the same
    lines = [line for line in done.stderr.splitlines() if ": warning: " in line]
    assert [line.split(": warning: ")[1].split(":")[0] for line in lines] == [
        "spec.steps[0].setWeight", "spec.steps[4].setWeight",
    ]
    assert "Traceback" not in done.stderr
