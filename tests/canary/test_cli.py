"""The CLI as a CI job sees it: exit codes, one-line errors, a live rollout followed to its end."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.client import Client

from tests.canary.helpers import error_check, rollout, rollout_yaml, running_worker, settings_for
from tests.fixtures_kube import deployment_manifest
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(120)

VALID = """\
apiVersion: orchestrator.dev/v1
kind: CanaryRollout
metadata:
  name: checkout
spec:
  target: {namespace: shop, deployment: checkout}
  change: {image: "registry/checkout:2.4.1"}
  steps:
    - setWeight: 20
    - analysis:
        checks:
          - name: errors
            query: 'sum(rate(x{app="{{app}}"}[1m]))'
            condition: {max: 0.01}
            count: 2
"""

# (description, text, expected line, expected field) — each a classic mistake.
INVALID = [
    ("unknown top-level key", VALID + "extra: 1\n", 16, "extra"),
    ("misspelt field", VALID.replace("change:", "chnage:"), 7, "spec.chnage"),
    ("weight above 100", VALID.replace("setWeight: 20", "setWeight: 120"), 9, "spec.steps.0.setWeight"),
    ("unknown step kind", VALID.replace("- setWeight: 20", "- wait: 20"), 9, "spec.steps.0"),
    ("bad duration", VALID.replace("count: 2", "count: 2\n            interval: 5 minutes"), 16,
     "spec.steps.1.analysis.checks.0.interval"),
    ("unknown template variable", VALID.replace("{{app}}", "{{service}}"), 13, "spec.steps.1.analysis.checks.0.query"),
    ("condition without bounds", VALID.replace("{max: 0.01}", "{}"), 14, "spec.steps.1.analysis.checks.0.condition"),
    ("approval without timeout", VALID.replace("- setWeight: 20", "- pause: {untilApproved: true}"), 9,
     "spec.steps.0.pause"),
    ("invalid namespace name", VALID.replace("namespace: shop", "namespace: Shop_1"), 6, "spec.target.namespace"),
    ("missing steps", VALID.split("  steps:")[0], 5, "spec.steps"),
    ("wrong kind", VALID.replace("kind: CanaryRollout", "kind: Canary"), 2, "kind"),
    ("yaml syntax", VALID.replace("setWeight: 20", "setWeight: [20"), 10, "yaml"),
    ("negative failure limit", VALID.replace("count: 2", "count: 2\n            failureLimit: -1"), 16,
     "spec.steps.1.analysis.checks.0.failureLimit"),
    ("unknown router", VALID.replace("  steps:", "  traffic: {type: linkerd}\n  steps:"), 8, "spec.traffic"),
    ("baseline comparison without baseline", VALID.replace("{max: 0.01}", "{compareTo: baseline, maxRatio: 1.2}")
     .replace('x{app="{{app}}"}', 'x{app="{{app}}",{{track_selector}}}'), 5, "spec"),
    ("relative check that cannot tell its sides apart",
     VALID.replace("{max: 0.01}", "{compareTo: stable, maxRatio: 1.2}"), 12, "spec.steps.1.analysis.checks.0"),
    ("value placeholder outside a quoted label value", VALID.replace("[1m]))'", "[1m])) > {{version}}'"), 13,
     "spec.steps.1.analysis.checks.0.query"),
]


async def orchestrator(*args: str, env: dict[str, str] | None = None, timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orchestrator", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(("what", "text", "line", "field"), INVALID, ids=[c[0] for c in INVALID])
async def test_invalid_spec_gives_one_clear_line_and_exit_2(
    tmp_path: Path, what: str, text: str, line: int, field: str
) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    code, out, err = await orchestrator("validate", str(path))
    assert code == 2, (what, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (what, err)
    assert lines[0].startswith(f"{path}:{line}: {field}: "), (what, lines[0])
    assert "Traceback" not in err


async def test_valid_spec_and_examples_validate(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(VALID)
    examples = sorted(str(p) for p in Path("examples").glob("*canary*.yaml"))
    code, out, err = await orchestrator("validate", str(path), *examples)
    assert code == 0, err
    assert out.count(": ok (CanaryRollout)") == 1 + len(examples)


async def test_schema_is_printed_for_each_kind() -> None:
    code, out, _ = await orchestrator("schema", "CanaryRollout")
    assert code == 0 and '"setWeight"' in out and '"noData"' in out
    code, _, err = await orchestrator("schema", "Nope")
    assert code == 2 and "unknown kind" in err


async def test_unreachable_temporal_is_exit_3_without_traceback(tmp_path: Path) -> None:
    code, _, err = await orchestrator(
        "canary", "list", env={"ORCHESTRATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert code == 3, err
    assert err.startswith("error: cannot reach Temporal at 127.0.0.1:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


async def test_unreachable_prometheus_is_exit_3(kube: Any, tmp_path: Path) -> None:
    k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(
        kube.namespace, deployment_manifest("checkout", replicas=2, image="demo:1"))
    path = tmp_path / "spec.yaml"
    path.write_text(rollout_yaml(rollout(kube.namespace, "checkout", [
        {"setWeight": 50}, {"analysis": {"checks": [error_check()]}}])))
    code, _, err = await orchestrator("canary", "run", str(path), env={
        "ORCHESTRATOR_KUBECONFIG": str(kube.kubeconfig),
        "ORCHESTRATOR_PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}",
        "ORCHESTRATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    })
    assert code == 3, err
    assert "cannot reach Prometheus" in err and "Traceback" not in err


async def test_unreachable_kubernetes_is_exit_3(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    port = free_port()
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n")
    path = tmp_path / "spec.yaml"
    path.write_text(VALID)
    code, _, err = await orchestrator("canary", "run", str(path), env={"ORCHESTRATOR_KUBECONFIG": str(kubeconfig)})
    assert code == 3, err
    assert "cannot reach Kubernetes" in err and "Traceback" not in err


async def test_missing_target_is_reported_against_the_spec(kube: Any, tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(rollout_yaml(rollout(kube.namespace, "ghost", [{"setWeight": 50}])))
    code, _, err = await orchestrator("canary", "run", str(path), env={"ORCHESTRATOR_KUBECONFIG": str(kube.kubeconfig)})
    assert code == 2, err
    assert f"spec.target.deployment: Deployment {kube.namespace}/ghost not found" in err


async def test_run_wait_exit_codes_and_one_rollout_per_target(
    kube: Any, prom_live: Any, temporal_client: Client, temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    apps = k8s.AppsV1Api(kube.api_client)
    for name in ("healthy", "broken"):
        apps.create_namespaced_deployment(kube.namespace, deployment_manifest(name, replicas=3, image="demo:1"))
    env = {
        "ORCHESTRATOR_KUBECONFIG": str(kube.kubeconfig),
        "ORCHESTRATOR_PROMETHEUS_URL": prom_live.url,
        "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address,
        "ORCHESTRATOR_TASK_QUEUE": task_queue,
    }
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(rollout_yaml(rollout(kube.namespace, "healthy", [
        {"setWeight": 34}, {"analysis": {"checks": [error_check()]}}, {"pause": {"duration": "3s"}}])))
    bad.write_text(rollout_yaml(rollout(kube.namespace, "broken", [
        {"setWeight": 34}, {"analysis": {"checks": [error_check()]}}])))
    settings = settings_for(prom_live.url, task_queue)
    async with running_worker(temporal_client, settings, kube.api_client):
        first = asyncio.create_task(orchestrator("canary", "run", str(good), "--wait", env=env))
        await asyncio.sleep(1.5)
        code, _, err = await orchestrator("canary", "run", str(good), env=env)
        assert code == 1 and "already running" in err, err
        code, out, err = await first
        assert code == 0, out + err
        assert "result: promoted" in out and "gate error-rate" in out
        code, out, err = await orchestrator("canary", "run", str(bad), "--wait", "--output", "markdown", env=env)
        assert code == 1, out + err
        assert "### Canary `broken`: Rolled back" in out
        assert "| error-rate | failed |" in out


async def test_status_list_and_controls_from_the_command_line(
    kube: Any, prom_live: Any, temporal_client: Client, temporal_address: str, task_queue: str
) -> None:
    import json

    from tests.canary.helpers import start, wait_for

    k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(
        kube.namespace, deployment_manifest("healthy", replicas=3, image="demo:1"))
    env = {"ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address, "ORCHESTRATOR_TASK_QUEUE": task_queue}
    name = f"{kube.namespace}/healthy"
    spec = rollout(kube.namespace, "healthy", [{"setWeight": 34}, {"pause": {"duration": "5m"}}])
    async with running_worker(temporal_client, settings_for(prom_live.url, task_queue), kube.api_client):
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.step == 1)
        code, out, err = await orchestrator("canary", "list", "-o", "json", env=env)
        assert code == 0, err
        assert handle.id in [row["workflow_id"] for row in json.loads(out)]
        code, out, err = await orchestrator("canary", "status", name, "-o", "json", env=env)
        assert code == 0, err
        assert json.loads(out)["weight"] == 34
        code, out, err = await orchestrator("canary", "approve", name, env=env)
        assert code == 1 and "approve refused" in err and "nothing waits for approval" in err, err
        code, out, err = await orchestrator("canary", "pause", name, env=env)
        assert code == 0 and "paused" in out, err
        code, out, err = await orchestrator("canary", "abort", name, "--reason", "bad numbers", env=env)
        assert code == 0 and "rolling back" in out, err
        result = await handle.result()
    assert result.phase.value == "aborted" and "bad numbers" in (result.reason or "")
    code, out, err = await orchestrator("canary", "status", name, env=env)
    assert code == 0 and "phase aborted" in out, err
