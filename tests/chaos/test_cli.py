"""``orchestrator chaos`` as a user runs it: a real process, real exit codes, one clear line on errors."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

from orchestrator.api.chaos import ChaosInput, ChaosPhase
from orchestrator.chaos.objects import Objects
from orchestrator.client import chaos as control
from orchestrator.config import Settings
from tests.chaos.conftest import PromRules, deploy, experiment, writes
from tests.chaos.test_workflow import _replicas, _until, _worker
from tests.fixtures_kube import KubeTestEnv

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(r"^\S+:\d+: [\w.\-()]+: .+$")


def orchestrator(*args: str, env: dict[str, str] | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from orchestrator.cli.main import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          cwd=ROOT)


def _write(tmp_path: Path, name: str, doc: object) -> str:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _valid() -> dict[str, object]:
    return experiment("prod", {"type": "pod-kill"}).model_dump(mode="json", by_alias=True, exclude_defaults=True)


def _mutate(path: str, value: object) -> dict[str, object]:
    doc = _valid()
    node: dict[str, object] = doc
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})  # type: ignore[assignment]
    if value is None:
        node.pop(keys[-1], None)
    else:
        node[keys[-1]] = value
    return doc


INVALID = {
    "unknown-fault": (_mutate("spec.fault", {"type": "disk-fill"}), "spec.fault"),
    "missing-selector": (_mutate("spec.target.selector", None), "spec.target.selector"),
    "percent-over-100": (_mutate("spec.target.mode", {"type": "percent", "value": 150}), "spec.target.mode"),
    "fixed-without-value": (_mutate("spec.target.mode", {"type": "fixed"}), "spec.target.mode"),
    "bad-duration": (_mutate("spec.duration", "soon"), "spec.duration"),
    "unknown-key": (_mutate("spec.blastRadius.maxPods", 3), "spec.blastRadius.maxPods"),
    "no-checks": (_mutate("spec.steadyState.checks", []), "spec.steadyState.checks"),
    "http-without-fault": (_mutate("spec.fault", {"type": "http-fault", "virtualService": "web"}), "spec.fault"),
    "loss-without-loss": (_mutate("spec.fault", {"type": "network-chaos", "action": "loss"}), "spec.fault"),
    "bad-alert-label": (_mutate("spec.safety", {"alerts": {"matchLabels": {"bad-name": "x"}}}), "spec.safety"),
    "budget-floor": (_mutate("spec.safety", {"errorBudget": {"query": "x", "floor": 2}}), "spec.safety"),
    "slo-target-1": (_mutate("spec.safety", {"errorBudget": {"query": "x", "floor": 0.2, "sloTarget": 1}}),
                     "spec.safety"),
    "detect-within-0": (_mutate("spec.steadyState.detectWithin", "0s"), "spec.steadyState.detectWithin"),
    "yaml": ("apiVersion: orchestrator.dev/v1\nkind: ChaosExperiment\nspec: [unclosed\n", "yaml"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_experiment_gives_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    doc, field = INVALID[case]
    path = _write(tmp_path, f"{case}.yaml", doc)
    result = orchestrator("chaos", "run", path, "--dry-run")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and LINE.match(lines[0]), lines
    assert lines[0].startswith(path) and field.split(".")[0] in lines[0]
    assert "Traceback" not in result.stderr


def test_every_shipped_experiment_is_valid() -> None:
    files = sorted(str(p) for p in (ROOT / "experiments").glob("*.yaml"))
    assert len(files) >= 7
    result = orchestrator("validate", *files)
    assert result.returncode == 0, result.stderr + result.stdout


def _env(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules) -> dict[str, str]:
    return {
        "ORCHESTRATOR_TEMPORAL_ADDRESS": settings.temporal_address,
        "ORCHESTRATOR_PROMETHEUS_URL": prom_rules.url,
        "ORCHESTRATOR_KUBECONFIG": str(kube.kubeconfig),
        "ORCHESTRATOR_CHAOS_NAMESPACES": kube.namespace,
    }


def test_dry_run_prints_the_plan_and_writes_nothing(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules,
                                                    tmp_path: Path) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 2}, mode="all", max_percent=50)
    path = _write(tmp_path, "exp.yaml", exp.model_dump(mode="json", by_alias=True))
    kube._audit_start = kube.server.audit_log.last_seq
    result = orchestrator("chaos", "run", path, "--dry-run", env=_env(kube, settings, prom_rules))
    assert result.returncode == 0, result.stderr
    assert "every safety rail passed" in result.stdout
    assert f"scale Deployment {kube.namespace}/web from 4 to 2 replicas" in result.stdout
    assert writes(kube, all_namespaces=True) == []
    assert _replicas(kube) == 4


def test_dry_run_shows_a_refusal_with_exit_1(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules,
                                             tmp_path: Path) -> None:
    deploy(kube, replicas=4, allow=False)
    path = _write(tmp_path, "exp.yaml", experiment(kube.namespace, {"type": "pod-kill"}).model_dump(
        mode="json", by_alias=True))
    result = orchestrator("chaos", "run", path, "--dry-run", env=_env(kube, settings, prom_rules))
    assert result.returncode == 1
    assert "has not opted in" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unreachable_temporal_is_exit_3(tmp_path: Path) -> None:
    path = _write(tmp_path, "exp.yaml", _valid())
    from tests.fixtures_temporal import free_port

    result = orchestrator("chaos", "run", path, env={"ORCHESTRATOR_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert result.returncode == 3, result.stderr
    assert "cannot reach Temporal" in result.stderr


@pytest.fixture
async def worker(temporal_client: Client, task_queue: str, settings: Settings, kube: KubeTestEnv,
                 metrics: object, policy: object) -> AsyncIterator[None]:
    async with _worker(temporal_client, task_queue, settings, kube, metrics, policy):  # type: ignore[arg-type]
        yield


@pytest.mark.usefixtures("worker")
async def test_abort_all_reverts_at_once(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules,
                                         temporal_client: Client, task_queue: str) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 1}, mode="all", max_percent=100,
                     duration="60s")
    handle = await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)
    await _until(lambda: _replicas(kube) == 1)
    result = await asyncio.to_thread(orchestrator, "chaos", "abort", "--all", env=_env(kube, settings, prom_rules))
    assert result.returncode == 0, result.stderr
    assert f"aborted {handle.id}" in result.stdout
    # The janitor-style sweep ran in the command itself: the fault is gone when it returns.
    assert _replicas(kube) == 4
    final = await handle.result()
    assert final.phase is ChaosPhase.ABORTED


@pytest.mark.usefixtures("worker")
async def test_run_wait_status_and_abort_by_name(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules,
                                                 tmp_path: Path, task_queue: str, temporal_client: Client) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 1}, mode="all", max_percent=100,
                     duration="60s", name="cli-abort")
    path = _write(tmp_path, "exp.yaml", exp.model_dump(mode="json", by_alias=True))
    env = {**_env(kube, settings, prom_rules), "ORCHESTRATOR_TASK_QUEUE": task_queue}
    waiting = asyncio.create_task(asyncio.to_thread(orchestrator, "chaos", "run", path, "--wait", env=env,
                                                    timeout=80))
    await _until(lambda: _replicas(kube) == 1)
    status = await asyncio.to_thread(orchestrator, "chaos", "status", "cli-abort", env=env)
    assert status.returncode == 0 and "fault-active" in status.stdout, status.stderr
    abort = await asyncio.to_thread(orchestrator, "chaos", "abort", "cli-abort", "--reason", "enough", env=env)
    assert abort.returncode == 0, abort.stderr
    result = await waiting
    assert result.returncode == 1 and "aborted" in result.stdout, result.stdout + result.stderr
    assert _replicas(kube) == 4


def test_janitor_command_reverts_an_expired_fault(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules,
                                                  objects: object, policy: object) -> None:
    from datetime import timedelta

    from orchestrator.chaos import ledger
    from orchestrator.chaos.faults import injector_for
    from orchestrator.chaos.planning import plan_fault
    from tests.chaos.conftest import now

    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "scale-down", "replicas": 1}, mode="all", max_percent=100)
    # Planned two hours ago: its expiry has passed, and no workflow exists for it.
    plan = plan_fault(objects=objects, policy=policy, experiment=exp, run="gone-1",  # type: ignore[arg-type]
                      now=now() - timedelta(hours=2))
    for entry in plan.entries:
        injector_for(entry.fault, objects).inject(ledger.record(objects, entry))  # type: ignore[arg-type]
    assert _replicas(kube) == 1
    result = orchestrator("chaos", "janitor", env=_env(kube, settings, prom_rules))
    assert result.returncode == 0, result.stderr
    assert f"reverted Deployment {kube.namespace}/web (run gone-1)" in result.stdout
    assert _replicas(kube) == 4


def test_dry_run_shows_every_pod_a_drain_evicts_and_the_floors(kube: KubeTestEnv, settings: Settings,
                                                               prom_rules: PromRules, tmp_path: Path,
                                                               objects: Objects) -> None:
    from tests.chaos.test_radius import _blast, _drain_setup, _namespace, _seed_on, _unannotate

    with _namespace(kube) as other_ns:
        node, foreign = _drain_setup(kube, other_ns)
        try:
            exp = _seed_on(objects, experiment(kube.namespace, {"type": "node-drain"}, max_percent=100), node)
            exp = _blast(exp, disturb={"nodes": [node], "namespaces": [kube.namespace, other_ns]})
            path = _write(tmp_path, "drain.yaml", exp.model_dump(mode="json", by_alias=True))
            on_node = sorted(p["metadata"]["name"] for p in kube.pods("app=web") if p["spec"]["nodeName"] == node)
            kube._audit_start = kube.server.audit_log.last_seq
            result = orchestrator("chaos", "run", path, "--dry-run", env=_env(kube, settings, prom_rules))
            assert result.returncode == 0, result.stderr
            assert f"cordon node {node}" in result.stdout
            for name in on_node:
                assert f"hits: {kube.namespace}/{name} (Deployment {kube.namespace}/web)" in result.stdout
            for name in foreign:
                assert f"hits: {other_ns}/{name} (Deployment {other_ns}/other)" in result.stdout
                assert f"touches: Pod {other_ns}/{name}" in result.stdout
            assert f"plan: floor: Deployment {other_ns}/other: 2 of 2 ready, floor 1" in result.stdout
            assert f"touches: Node {node}" in result.stdout
            assert writes(kube, all_namespaces=True) == []
        finally:
            _unannotate(kube, node)


def test_dry_run_says_when_a_round_would_be_skipped(kube: KubeTestEnv, settings: Settings, prom_rules: PromRules,
                                                    tmp_path: Path) -> None:
    deploy(kube, replicas=4)
    exp = experiment(kube.namespace, {"type": "pod-kill"}, max_percent=50)
    exp = exp.model_copy(update={"spec": exp.spec.model_copy(update={
        "blast_radius": exp.spec.blast_radius.model_copy(update={"max_unavailable": 0})})})
    path = _write(tmp_path, "exp.yaml", exp.model_dump(mode="json", by_alias=True))
    result = orchestrator("chaos", "run", path, "--dry-run", env=_env(kube, settings, prom_rules))
    # A first round with nothing to inject is a refused run, so the dry run exits as the run would.
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the run would be REFUSED: nothing to inject: round skipped: Deployment" in result.stdout
    assert "every safety rail passed" not in result.stdout
    assert "below its floor of 4" in result.stdout and "experiment maxUnavailable 0 -> 4" in result.stdout


@pytest.mark.usefixtures("worker")
async def test_dry_run_of_a_drain_below_a_pdb_floor_exits_as_the_run_does(
        kube: KubeTestEnv, settings: Settings, prom_rules: PromRules, tmp_path: Path, objects: Objects,
        temporal_client: Client, task_queue: str) -> None:
    from orchestrator.chaos.models import ALLOW_ANNOTATION
    from orchestrator.specs.chaos import ChaosExperiment
    from tests.chaos.test_radius import _seed_on, _unannotate

    deploy(kube, replicas=4)
    nodes = [p["spec"]["nodeName"] for p in kube.pods("app=web")]
    node = max(set(nodes), key=nodes.count)
    assert nodes.count(node) == 2, nodes
    kube.policy.create_namespaced_pod_disruption_budget(kube.namespace, {
        "metadata": {"name": "web"}, "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}})
    # The shipped experiment, pointed at this namespace, with checks this Prometheus can answer.
    doc = yaml.safe_load((ROOT / "experiments" / "node-drain.yaml").read_text())
    doc["spec"]["target"].update({"namespace": kube.namespace, "selector": {"app": "web"}})
    doc["spec"]["steadyState"]["checks"] = [{"name": "up", "query": "vector(1)", "condition": {"min": 1},
                                             "interval": "1s", "count": 1}]
    doc["spec"]["blastRadius"]["maxPodsPercent"] = 100
    exp = _seed_on(objects, ChaosExperiment.model_validate(doc), node)
    path = _write(tmp_path, "node-drain.yaml", exp.model_dump(mode="json", by_alias=True, exclude_none=True))
    kube.core.patch_node(node, {"metadata": {"annotations": {ALLOW_ANNOTATION: "true"}}})
    try:
        dry = await asyncio.to_thread(orchestrator, "chaos", "run", path, "--dry-run",
                                      env=_env(kube, settings, prom_rules))
        run = await (await control.start(temporal_client, ChaosInput(experiment=exp), task_queue)).result()
    finally:
        _unannotate(kube, node)
    assert run.phase is ChaosPhase.REFUSED, run.reason
    assert "would keep 2 ready pod(s), below its floor of 3" in (run.reason or "")
    assert dry.returncode == 1, dry.stdout + dry.stderr
    assert "every safety rail passed" not in dry.stdout
    assert dry.stderr.strip() == f"refused: {run.reason}"


def test_dry_run_with_a_policy_prints_every_rail_and_refuses_in_a_freeze(kube: KubeTestEnv, settings: Settings,
                                                                         prom_rules: PromRules, tmp_path: Path) -> None:
    deploy(kube, replicas=4)
    path = _write(tmp_path, "exp.yaml", experiment(kube.namespace, {"type": "pod-kill"}).model_dump(
        mode="json", by_alias=True))
    policy: dict[str, object] = {
        "apiVersion": "orchestrator.dev/v1", "kind": "RailsPolicy", "metadata": {"name": "t"},
        "spec": {"namespaces": {"allowed": [kube.namespace]}, "recentDeployments": {"quietPeriod": "0s"}}}
    env = {**_env(kube, settings, prom_rules), "ORCHESTRATOR_POLICY": _write(tmp_path, "policy.yaml", policy)}
    result = orchestrator("chaos", "run", path, "--dry-run", env=env)
    assert result.returncode == 0, result.stderr
    for rail in ("change-freeze", "staffed-hours", "namespace", "chaos-plan"):
        assert any(line.startswith(f"plan: rail {rail}") for line in result.stdout.splitlines()), result.stdout
    assert "plan: floor: Deployment" in result.stdout
    frozen = {**policy, "spec": {**policy["spec"], "freezes": [  # type: ignore[dict-item]
        {"name": "holiday", "start": "2000-01-01T00:00:00Z", "end": "2999-01-01T00:00:00Z"}]}}
    env["ORCHESTRATOR_POLICY"] = _write(tmp_path, "frozen.yaml", frozen)
    result = orchestrator("chaos", "run", path, "--dry-run", env=env)
    assert result.returncode == 1 and "holiday" in result.stderr, result.stdout + result.stderr
