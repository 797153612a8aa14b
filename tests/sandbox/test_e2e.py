"""End to end on the sandbox: real pods (local processes), real traffic, Prometheus scraping them.

Given the demo app at v1 under steady load, when a healthy v2 canary runs it is promoted,
and when a v3 that fails 10 % of its requests runs it is rolled back by its gate.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from orchestrator.config import PrometheusSettings, Settings
from orchestrator.kube.client import load_api_client
from orchestrator.sandbox import demo, manager
from orchestrator.worker import build_worker
from tests.fixtures_temporal import free_port

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[manager.SandboxInfo]:
    state_dir = tmp_path_factory.mktemp("sandbox")
    info = manager.up(state_dir, temporal_port=free_port(), ui_port=free_port(), api_port=free_port(),
                      prometheus_port=free_port(), scrape_interval=2.0)
    try:
        yield info
    finally:
        manager.down(state_dir)
    leftover = [c for c in manager.status(state_dir).components if c.alive]
    assert not leftover, f"sandbox down left processes running: {leftover}"


def pids_alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        alive.append(pid)
    return alive


async def test_healthy_canary_promoted_and_bad_canary_rolled_back(sandbox: manager.SandboxInfo) -> None:
    import asyncio

    api_client = load_api_client(sandbox.kubeconfig)
    settings = Settings(temporal_address=sandbox.temporal_address, task_queue="e2e",
                        prometheus=PrometheusSettings(url=sandbox.prometheus_url), kubeconfig=sandbox.kubeconfig)
    demo.deploy_app(api_client)
    await asyncio.to_thread(demo.wait_for_metrics, sandbox.prometheus_url)
    client = await Client.connect(sandbox.temporal_address, data_converter=pydantic_data_converter)
    results: list[Any] = []
    async with build_worker(client, settings, api_client=api_client):
        for image, env in (("registry.local/shop:v2", {}), ("registry.local/shop:v3", {"ERROR_RATE": "0.1"})):
            _, status = await demo.run_canary(client, settings, demo.rollout_spec(image, env), lambda _m: None)
            results.append(status)

    good, bad = results
    # The demo's canaries are judged against the stable side (demo.rollout_spec): the healthy one is shown
    # below the negligible error rate at each step, the 10 % one rolled back on the judge's evidence.
    assert good.phase.value == "promoted", good.reason
    judged = [g for g in good.gates if g.check.startswith("errors-vs-stable")]
    assert len(judged) == 2 and all(g.phase.value == "successful" for g in judged), judged
    assert bad.phase.value == "rolled-back", bad.reason
    gate = bad.decisive_gate
    assert gate is not None and gate.check == "errors-vs-stable", bad.model_dump_json(indent=1)
    assert gate.last is not None and gate.last.outcome == "failed", gate.last
    assert gate.last.value is not None and gate.last.value > 0.02, gate.last  # the canary's error rate
    assert "-> rollback" in gate.reason and "false-rollback bound 1 %" in gate.reason, gate.reason
    apps = k8s.AppsV1Api(api_client)
    stable = apps.read_namespaced_deployment(demo.APP, demo.NAMESPACE)
    assert stable.spec.template.spec.containers[0].image == "registry.local/shop:v2"
    assert stable.spec.replicas == demo.REPLICAS
    names = [d.metadata.name for d in apps.list_namespaced_deployment(demo.NAMESPACE).items]
    assert names == [demo.APP], "the canary Deployment is removed after the rollback"


def test_state_files_stay_inside_the_state_dir(sandbox: manager.SandboxInfo) -> None:
    state = Path(sandbox.state_dir)
    assert (state / "kubeconfig").exists()
    assert Path(sandbox.kubeconfig).resolve().is_relative_to(state.resolve())
