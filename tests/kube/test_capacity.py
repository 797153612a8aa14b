"""Serving capacity through a rollout: ready endpoints behind the Service never drop below what the stable promises.

Pods are real processes (``ProcessRuntime``) that answer ``/healthz`` only after ``STARTUP_SECONDS``, so a
pod is not ready the moment it is created, as on a real cluster. A thread samples the ready pods behind the
Service's selector (``app=web``: stable and canary pods alike) through the kubernetes client while:

* the replicas router shifts 0 -> 25 -> 100 % and back (reset),
* a promotion runs as the workflow runs it: stable template updated and rolled, stable waited for,
  ``reset`` (stable to full size and ready, then canary to 0),
* a rollback runs: ``reset`` from 50 %.

The floor is the stable's replicas minus its ``maxUnavailable`` (4 - 1); the router itself must never go
below the full 4, because it only removes pods once their replacements are ready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from orchestrator.kube.routers.base import Progress, RouteTarget
from orchestrator.kube.routers.replicas import ReplicasRouter
from orchestrator.kube.workloads import Workloads
from orchestrator.sandbox.apiserver import ApiServer
from orchestrator.sandbox.runtime import ProcessRuntime
from orchestrator.specs.canary import ReplicasRouting

pytestmark = pytest.mark.timeout(240)

NS = "default"
REPLICAS = 4
MAX_UNAVAILABLE = 1
STARTUP = "0.8"  # seconds before a new pod's /healthz answers


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[k8s.ApiClient]:
    runtime = ProcessRuntime(tmp_path)
    server = ApiServer("127.0.0.1", 0, runtime=runtime, controller=True, tick=0.1).start()
    api = k8s_config.new_client_from_config(config_file=str(server.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield api
    finally:
        server.stop()
        runtime.stop_all()


def _stable() -> dict[str, Any]:
    labels = {"app": "web"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": MAX_UNAVAILABLE}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": "demo:v1",
                                         "env": [{"name": "STARTUP_SECONDS", "value": STARTUP}]}]},
            },
        },
    }


class ReadySampler:
    """Counts ready, undeleted pods behind the Service selector, continuously, in a thread."""

    def __init__(self, api: k8s.ApiClient, selector: str = "app=web") -> None:
        self.core = k8s.CoreV1Api(api)
        self.selector = selector
        self.samples: list[int] = []
        self.totals: list[int] = []  # pods that exist (ready or not), for maxSurge
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> tuple[int, int]:
        pods = [
            p for p in self.core.list_namespaced_pod(NS, label_selector=self.selector).items
            if not p.metadata.deletion_timestamp
        ]
        ready = sum(1 for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []))
        return ready, len(pods)

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, total = self.count()
            self.samples.append(ready)
            self.totals.append(total)
            time.sleep(0.02)

    def __enter__(self) -> ReadySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _wait_complete(workloads: Workloads, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not workloads.availability(NS, name).complete:
        assert time.monotonic() < deadline, f"{name} did not complete: {workloads.availability(NS, name)}"
        time.sleep(0.1)


def test_ready_endpoints_never_drop_through_weights_promotion_and_rollback(cluster: k8s.ApiClient) -> None:
    workloads = Workloads(cluster)
    k8s.AppsV1Api(cluster).create_namespaced_deployment(NS, _stable())
    _wait_complete(workloads, "web")
    snap = workloads.snapshot(NS, "web")
    workloads.ensure_copy(NS, snap, "web-canary", "canary", "r1", 0, image="demo:v2")
    target = RouteTarget(namespace=NS, rollout="r1", stable="web", canary="web-canary",
                         total_replicas=REPLICAS, routing=ReplicasRouting())
    router = ReplicasRouter(cluster)
    progress = Progress(deadline_seconds=60, poll_seconds=0.1)

    # Weights up, then a rollback from 100 %.
    with ReadySampler(cluster) as shifting:
        for weight in (25, 100):
            router.set_weight(target, weight, progress)
        router.reset(target, progress)
    assert shifting.samples and min(shifting.samples) >= REPLICAS, shifting.samples

    # Promotion, in the workflow's order: stable template, stable available, reset, canary deleted.
    router.set_weight(target, 100, progress)
    with ReadySampler(cluster) as promoting:
        workloads.update_template(NS, "web", "web", "demo:v2")
        _wait_complete(workloads, "web")
        router.reset(target, progress)
        workloads.delete(NS, "web-canary")
    assert min(promoting.samples) >= REPLICAS, promoting.samples
    assert (workloads.availability(NS, "web").ready, len(promoting.samples) > 10) == (REPLICAS, True)

    # The stable's own rolling update on its full size (a rollback restoring the template): maxUnavailable holds.
    with ReadySampler(cluster) as rolling:
        workloads.restore_template(NS, "web", snap.template)
        _wait_complete(workloads, "web")
    assert min(rolling.samples) >= REPLICAS - MAX_UNAVAILABLE, rolling.samples
    assert max(rolling.totals) <= REPLICAS + 1, rolling.totals  # maxSurge 1
    # It did roll pod by pod: at some point fewer than all pods were ready, never fewer than the floor.
    assert min(rolling.samples) < REPLICAS + 1


def test_a_pod_is_not_ready_until_its_process_answers_healthz(cluster: k8s.ApiClient) -> None:
    body = _stable()
    body["spec"]["replicas"] = 1
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "STARTUP_SECONDS", "value": "2"}]
    k8s.AppsV1Api(cluster).create_namespaced_deployment(NS, body)
    sampler = ReadySampler(cluster)
    workloads = Workloads(cluster)
    deadline = time.monotonic() + 20
    running: list[bool] = []
    while time.monotonic() < deadline:
        pods = k8s.CoreV1Api(cluster).list_namespaced_pod(NS, label_selector="app=web").items
        if pods and pods[0].status.phase == "Running":
            running.append(sampler.count()[0] == 1)
            if running[-1]:
                break
        time.sleep(0.1)
    # Running (the process started) but not ready for a while, then ready once /healthz answers 200.
    assert running and running[0] is False and running[-1] is True, running
    assert workloads.availability(NS, "web").available == 1
