"""A worker killed in the middle of a step: a new worker finishes the rollout, no step applied twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from orchestrator.api.canary import Phase
from tests.canary.helpers import deployment, image_of, rollout, start, wait_for
from tests.fixtures_kube import deployment_manifest

pytestmark = pytest.mark.timeout(180)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "worker"],
        env={**os.environ, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


async def test_killed_worker_is_replaced_and_the_rollout_finishes_once(
    kube: Any, prom_live: Any, temporal_client: Client, temporal_address: str, task_queue: str, tmp_path: Path
) -> None:
    k8s.AppsV1Api(kube.api_client).create_namespaced_deployment(
        kube.namespace, deployment_manifest("healthy", replicas=3, image="demo:1"))
    env = {
        "ORCHESTRATOR_KUBECONFIG": str(kube.kubeconfig),
        "ORCHESTRATOR_PROMETHEUS_URL": prom_live.url,
        "ORCHESTRATOR_TEMPORAL_ADDRESS": temporal_address,
        "ORCHESTRATOR_TASK_QUEUE": task_queue,
    }
    spec = rollout(kube.namespace, "healthy", [
        {"setWeight": 34}, {"pause": {"duration": "4s"}}, {"setWeight": 67}, {"pause": {"duration": "1s"}}])
    log = tmp_path / "worker.log"
    first = start_worker(env, log)
    second = None
    try:
        handle = await start(temporal_client, spec, task_queue)
        await wait_for(handle, lambda s: s.step == 1 and s.weight == 34, timeout=60)
        first.send_signal(signal.SIGKILL)  # no graceful shutdown: the worker just dies mid-step
        first.wait(10)
        second = start_worker(env, log)
        result = await asyncio.wait_for(handle.result(), 120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(20)

    assert result.phase == Phase.PROMOTED, result.reason
    stable = deployment(kube.api_client, kube.namespace, "healthy")
    assert stable is not None and image_of(stable) == "demo:2" and stable.spec.replicas == 3

    scheduled: Counter[str] = Counter()
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
    assert scheduled["canary.set_weight"] == 2, scheduled  # 34 and 67, each once
    assert scheduled["canary.ensure_copy"] == 1
    assert scheduled["canary.update_stable"] == 1
    weights = [e.message for e in result.events if e.message.startswith("shifting")]
    assert weights == ["shifting 34% of traffic to the canary", "shifting 67% of traffic to the canary"]
