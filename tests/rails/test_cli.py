"""``canary run --dry-run`` and ``flag ramp --dry-run``: every rail's verdict printed, exit 1 with the refusing
rail's reason, and nothing written to the cluster (checked in the sandbox API server's audit log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_kube import KubeTestEnv, deployment_manifest
from tests.rails.conftest import RailsProm, writes

pytestmark = pytest.mark.timeout(120)

POLICY = """\
apiVersion: orchestrator.dev/v1
kind: RailsPolicy
metadata: {name: test}
spec:
  incidents: {matchLabels: {severity: critical, app: "{{app}}"}}
  health:
    - {name: burn, query: 'slo:burn_rate1h{app="{{app}}"}', max: 1, kinds: [canary]}
"""


def cli(args: list[str], kube: KubeTestEnv, prom: RailsProm, temporal: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ORCHESTRATOR_KUBECONFIG": str(kube.kubeconfig), "ORCHESTRATOR_PROMETHEUS_URL": prom.url,
           "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal}
    env.pop("ORCHESTRATOR_POLICY", None)
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, env=env,
                          timeout=90, check=False)


def canary_file(tmp_path: Path, namespace: str, deployment: str) -> Path:
    path = tmp_path / f"{deployment}.yaml"
    path.write_text(f"apiVersion: orchestrator.dev/v1\nkind: CanaryRollout\nmetadata: {{name: {deployment}}}\n"
                    f"spec:\n  target: {{namespace: {namespace}, deployment: {deployment}}}\n"
                    "  change: {image: 'demo:2'}\n  steps: [{setWeight: 50}]\n")
    return path


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_canary_dry_run_prints_every_rail_and_writes_nothing(
    kube: KubeTestEnv, rails_prom: RailsProm, temporal_address: str, tmp_path: Path, policy_file: Path
) -> None:
    for name in ("cart", "checkout"):
        kube.apps.create_namespaced_deployment(kube.namespace, deployment_manifest(name, replicas=2))
    kube.settle(4)
    kube._audit_start = kube.server.audit_log.last_seq
    ok = cli(["canary", "run", str(canary_file(tmp_path, kube.namespace, "cart")), "--dry-run",
              "--policy", str(policy_file)], kube, rails_prom, temporal_address)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for rail in ("change-freeze", "staffed-hours", "mutual-exclusion", "recent-deployments", "capacity",
                 "incidents", "health"):
        assert f"  {rail}" in ok.stdout
    assert "burn = 0.4 (<= 1)" in ok.stdout
    assert "every rail passed (dry run: nothing was changed)" in ok.stdout

    refused = cli(["canary", "run", str(canary_file(tmp_path, kube.namespace, "checkout")), "--dry-run",
                   "--policy", str(policy_file), "-o", "json"], kube, rails_prom, temporal_address)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    report = json.loads(refused.stdout)
    assert report["refused"] is True
    assert report["reason"].startswith("incidents: 1 alert(s) firing for the target: CheckoutDown")
    assert {v["rail"]: v["status"] for v in report["verdicts"]}["health"] == "refused"
    assert writes(kube) == []
    assert any(e["verb"] == "list" for e in kube.audit(all_namespaces=True))  # it did look


def test_flag_ramp_dry_run_refuses_in_a_freeze_and_writes_nothing(
    kube: KubeTestEnv, rails_prom: RailsProm, temporal_address: str, tmp_path: Path
) -> None:
    flags = tmp_path / "flags.json"
    flags.write_text('{"flags": {}}')
    before = flags.read_text()
    spec = tmp_path / "ramp.yaml"
    spec.write_text("apiVersion: orchestrator.dev/v1\nkind: FlagRamp\nmetadata: {name: r}\nspec:\n"
                    "  provider: {type: flagd, name: local}\n  flag: new-checkout\n"
                    f"  target: {{namespace: {kube.namespace}, app: cart}}\n  stages: [{{percent: 100}}]\n")
    policy = tmp_path / "freeze.yaml"
    policy.write_text("apiVersion: orchestrator.dev/v1\nkind: RailsPolicy\nmetadata: {name: f}\nspec:\n"
                      "  freezes:\n    - {name: now, start: '2020-01-01T00:00:00Z', end: '2099-01-01T00:00:00Z'}\n")
    kube._audit_start = kube.server.audit_log.last_seq
    out = cli(["flag", "ramp", str(spec), "--dry-run", "--policy", str(policy)], kube, rails_prom, temporal_address)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "refused: change-freeze: change freeze 'now' from 2020-01-01T00:00:00+00:00" in out.stdout
    assert "  capacity             skipped  creates no pods (flag)" in out.stdout
    assert flags.read_text() == before
    assert writes(kube) == []
